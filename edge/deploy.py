"""Deploy a ``.tflite`` model (and its labels) to an Android phone or a Coral device.

Usage::

    python -m edge.deploy model_int8.tflite --target android [--labels labels.txt] \\
        [--dest /data/local/tmp/tfq_models] [--serial SERIAL]
    python -m edge.deploy model_int8.tflite --target coral --dest /path/on/coral/host \\
        [--labels labels.txt]

``android`` pushes the files with ``adb`` and verifies each copy on the device
(size with ``stat``, checksum with ``sha256sum``, or ``md5sum`` on devices
without it). ``coral`` compiles the model with ``edgetpu_compiler`` unless it is
already compiled (it has an ``edgetpu-custom-op``), then copies the compiled
model into ``--dest`` (a folder on the machine the Edge TPU is attached to, or a
mounted Dev Board filesystem) and verifies size and sha256. Existing files are
only replaced with ``--overwrite``. Exit status 0 when every copy verified.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import shutil
import sys
import tempfile
from typing import Any

from edge._common import EdgeError, check_writable, setup_logging, write_json_atomic

logger = logging.getLogger("edge.deploy")

DEFAULT_ANDROID_DEST = "/data/local/tmp/tfq_models"


def _files(args: argparse.Namespace) -> list[str]:
    files = [args.model] + ([args.labels] if args.labels else [])
    for f in files:
        if not os.path.isfile(f):
            raise EdgeError(f"file not found: {f}")
    return files


def deploy_android(args: argparse.Namespace) -> dict[str, Any]:
    """Pushes the model (and labels) to the phone and verifies every copy."""
    from edge.adb import connect, local_checksum

    adb = connect(args.adb, args.serial, timeout=args.timeout)
    dest = (args.dest or DEFAULT_ANDROID_DEST).rstrip("/") or "/"
    adb.shell(["mkdir", "-p", dest])
    copies = []
    for f in _files(args):
        remote = posixpath.join(dest, os.path.basename(f))
        exists = adb.shell(["ls", remote], check=False).returncode == 0
        if exists and not args.overwrite:
            raise EdgeError(f"{remote} already exists on {adb.serial}; pass --overwrite to replace it")
        adb.push(f, remote, timeout=args.timeout)
        size = adb.file_size(remote)
        algo, digest = adb.checksum(remote)
        expected = local_checksum(f, algo)
        ok = size == os.path.getsize(f) and digest == expected
        copies.append({"local": os.path.abspath(f), "remote": remote, "size": size, algo: digest, "verified": ok})
        if not ok:
            raise EdgeError(f"copy of {f} on the device does not match: {size} bytes, {algo} {digest} "
                            f"(expected {os.path.getsize(f)} bytes, {expected})")
        print(f"{f} -> {adb.serial}:{remote} ({size} bytes, {algo} verified)")
    return {"target": "android", "device": adb.device_info(), "files": copies}


def deploy_coral(args: argparse.Namespace) -> dict[str, Any]:
    """Compiles for the Edge TPU when needed, copies into ``--dest`` and verifies."""
    from edge.adb import local_checksum
    from edge.edgetpu import CUSTOM_OP, compile_model
    from edge.tflite_model import summarize

    if not args.dest:
        raise EdgeError("--target coral needs --dest DIR (where the Edge TPU host or mounted board reads models)")
    files = _files(args)
    compile_info = None
    with tempfile.TemporaryDirectory(prefix="edge-deploy-") as tmp:
        model = args.model
        if CUSTOM_OP in summarize(model).op_counts():
            logger.info("%s is already compiled for the Edge TPU", model)
        elif args.no_compile:
            logger.warning("%s is not compiled for the Edge TPU; copying it as is (--no-compile)", model)
        else:
            compile_info = compile_model(model, tmp, compiler=args.compiler, timeout=args.timeout)
            model = compile_info["compiled_model"]
            compile_info = {k: v for k, v in compile_info.items() if k != "log"}
        os.makedirs(args.dest, exist_ok=True)
        copies = []
        for src in [model] + files[1:]:
            target = os.path.join(args.dest, os.path.basename(src))
            check_writable(target, args.overwrite)
            shutil.copyfile(src, target)
            size, digest = os.path.getsize(target), local_checksum(target)
            ok = size == os.path.getsize(src) and digest == local_checksum(src)
            copies.append({"local": os.path.abspath(src), "remote": os.path.abspath(target), "size": size,
                           "sha256": digest, "verified": ok})
            if not ok:
                raise EdgeError(f"copy {target} does not match {src}")
            print(f"{src} -> {target} ({size} bytes, sha256 verified)")
    return {"target": "coral", "compile": compile_info, "files": copies}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses ``python -m edge.deploy``."""
    p = argparse.ArgumentParser(prog="python -m edge.deploy",
                                description="Copy a .tflite model (and labels) to a phone or a Coral device.")
    p.add_argument("model", metavar="MODEL.tflite")
    p.add_argument("--target", choices=("android", "coral"), required=True)
    p.add_argument("--labels", default=None, help="labels file to copy beside the model")
    p.add_argument("--dest", default=None,
                   help=f"destination folder (android default: {DEFAULT_ANDROID_DEST}; coral: required)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files at the destination")
    a = p.add_argument_group("android")
    a.add_argument("--adb", default=None, help="adb executable (default: $ADB or adb on PATH)")
    a.add_argument("--serial", default=None, help="device serial when several are attached")
    c = p.add_argument_group("coral")
    c.add_argument("--compiler", default=None, help="edgetpu_compiler executable")
    c.add_argument("--no-compile", action="store_true", help="copy the model without compiling it")
    o = p.add_argument_group("output")
    o.add_argument("--timeout", type=float, default=600.0, help="seconds per adb/compiler command")
    o.add_argument("--json", default=None, metavar="OUT.json", help="write what was copied as JSON")
    o.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Deploys; 0 when every copy verified, 1 on failure (message on stderr)."""
    from edge.tflite_model import InvalidModelError, validate

    setup_logging(args.verbose)
    try:
        check_writable(args.json, args.overwrite)
        validate(args.model)
        report = deploy_android(args) if args.target == "android" else deploy_coral(args)
    except (EdgeError, InvalidModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        write_json_atomic(args.json, {"tool": "edge.deploy", **report}, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
