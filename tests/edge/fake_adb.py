#!/usr/bin/env python3
"""Test double for the ``adb`` command: an Android device emulated on a local folder.

It is NOT adb: it implements just the subset edge.adb uses, so the real client
code (argument lists, quoting, error classification, parsing) runs unchanged.

* ``adb devices [-l]``: lists ``$FAKE_ADB_DEVICES`` (``serial:state,...``;
  default ``emulator-5554:device``; empty string = no device).
* ``adb [-s SERIAL] push LOCAL REMOTE``: copies into ``$FAKE_ADB_ROOT/REMOTE``.
* ``adb [-s SERIAL] shell COMMAND``: parses COMMAND like ``sh`` would
  (``shlex.split``; no pipes or ``;``) and runs a built-in against the folder:
  ``mkdir [-p]``, ``rm [-r] [-f]``, ``chmod MODE``, ``ls``, ``stat -c %s``,
  ``md5sum``, ``sha256sum``, ``getprop``, ``pkill``, ``taskset MASK CMD...``, and
  any file pushed to the device, which acts as TFLite's ``benchmark_model``
  printing a captured-format output chosen by ``$FAKE_BENCH_OUTPUT``
  (new, old, allsame, gpu_partial, gpu_fail, garbage).

Failure switches (environment):

* ``FAKE_ADB_DEVICES="SERIAL:unauthorized"``: unauthorized device;
* ``FAKE_ADB_GONE_AFTER=N``: the device disappears after N benchmark runs;
* ``FAKE_BENCH_SLEEP=S``: benchmark_model sleeps S seconds (timeouts);
* ``FAKE_ADB_NOEXEC=1``: executables fail with "Permission denied" (exit 126);
* ``FAKE_BENCH_OUTPUT=garbage``: unparsable output.

Every invocation is appended as one JSON line to ``$FAKE_ADB_LOG`` when set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import time

ROOT = os.environ.get("FAKE_ADB_ROOT", "/tmp/fake_adb_root")
STATE = os.path.join(ROOT, ".fake_adb_state.json")

# Outputs in the formats benchmark_model prints (see edge/android.py for the sources).
NEW_OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [{threads}]
INFO: Graph: [{graph}]
INFO: Loaded model {graph}
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Replacing 7 out of 7 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for the whole graph.
INFO: The input model file size (MB): 0.030264
INFO: Initialized session in 3.184ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1520 first=412 curr=301 min=287 max=1103 avg=318.52 std=41

INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count={runs} first=305 curr=299 min=280 max=512 avg=310.25 std=22

INFO: Inference timings in us: Init: 3184, First inference: 412, Warmup (avg): 318.52, Inference (avg): 310.25
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=1.85938 overall=2.48047
INFO: Overall peak memory footprint (MB) via periodic monitoring: 5.26953
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 5 MB
INFO: + RssAnnon           : 2 MB
INFO: + RssFile + RssShmem : 3 MB
"""

OLD_OUTPUT = """\
STARTING!
Min num runs: [{runs}]
Num threads: [{threads}]
Graph: [{graph}]
Loaded model {graph}
The input model file size (MB): 0.030264
Initialized session in 5.388ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=6 first=101726 curr=92010 min=90713 max=101726 avg=92755.2 std=3927

Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count={runs} first=91234 curr=90112 min=89010 max=93112 avg=90865.9 std=812

Inference timings in us: Init: 5388, First inference: 101726, Warmup (avg): 92755.2, Inference (avg): 90865.9
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=2.30859 overall=9.10547
"""

ALLSAME_OUTPUT = """\
INFO: Initialized session in 1.5ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=40000

INFO: Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count={runs} curr=20000(all same)

INFO: Inference timings in us: Init: 1500, First inference: 40000, Warmup (avg): 40000, Inference (avg): 20000
"""

GPU_PARTIAL_OUTPUT = """\
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
INFO: Initialized TensorFlow Lite runtime.
ERROR: Following operations are not supported by GPU delegate:
ERROR: CUSTOM_OP_X: Operation is not supported.
INFO: 5 operations will run on the GPU, and the remaining 2 operations will run on the CPU.
INFO: Replacing 5 out of 7 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for the whole graph.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ 1 delegate kernels.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=40 first=2100 curr=1500 min=1400 max=2100 avg=1520 std=80

INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count={runs} first=1510 curr=1490 min=1450 max=1620 avg=1500.5 std=30

INFO: Inference timings in us: Init: 250000, First inference: 2100, Warmup (avg): 1520, Inference (avg): 1500.5
"""

GPU_FAIL_OUTPUT = """\
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
ERROR: CUSTOM_OP_X: Operation is not supported.
ERROR: TfLiteGpuDelegate Init: No shader implementation for CUSTOM_OP_X
ERROR: Failed to apply GPU delegate.
ERROR: Benchmarking failed.
"""

GARBAGE_OUTPUT = "Segmentation fault\n\x00\x01 some bytes that are not a benchmark\n"

OUTPUTS = {"new": NEW_OUTPUT, "old": OLD_OUTPUT, "allsame": ALLSAME_OUTPUT, "gpu_partial": GPU_PARTIAL_OUTPUT,
           "gpu_fail": GPU_FAIL_OUTPUT, "garbage": GARBAGE_OUTPUT}
PROPS = {"ro.product.model": "Fake Pixel", "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a"}


def log(entry: dict) -> None:
    path = os.environ.get("FAKE_ADB_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def load_state() -> dict:
    try:
        with open(STATE, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"benchmarks": 0}


def save_state(state: dict) -> None:
    os.makedirs(ROOT, exist_ok=True)
    with open(STATE, "w", encoding="utf-8") as f:
        json.dump(state, f)


def local(remote: str) -> str:
    if not remote.startswith("/"):
        remote = "/" + remote
    return os.path.join(ROOT, remote.lstrip("/"))


def devices() -> list[tuple[str, str]]:
    spec = os.environ.get("FAKE_ADB_DEVICES", "emulator-5554:device")
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        serial, _, state = item.partition(":")
        out.append((serial, state or "device"))
    return out


def device_gone() -> bool:
    limit = os.environ.get("FAKE_ADB_GONE_AFTER")
    return limit is not None and load_state()["benchmarks"] >= int(limit)


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(message + "\n")
    return code


def run_benchmark(argv: list[str]) -> int:
    exe = local(argv[0])
    if os.environ.get("FAKE_ADB_NOEXEC") == "1" or not os.access(exe, os.X_OK):
        return fail(f"/system/bin/sh: {argv[0]}: can't execute: Permission denied", 126)
    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    graph = flags.get("graph", "")
    if not os.path.isfile(local(graph)):
        sys.stdout.write(f"ERROR: Could not open '{graph}'.\nERROR: Benchmarking failed.\n")
        return 1
    time.sleep(float(os.environ.get("FAKE_BENCH_SLEEP", "0")))
    variant = os.environ.get("FAKE_BENCH_OUTPUT", "new")
    if variant.startswith("gpu") and flags.get("use_gpu") != "true":
        variant = "new"
    state = load_state()
    state["benchmarks"] += 1
    save_state(state)
    sys.stdout.write(OUTPUTS[variant].format(graph=graph, runs=flags.get("num_runs", "50"),
                                             threads=flags.get("num_threads", "-1")))
    return 1 if variant == "gpu_fail" else 0


def shell(command: str) -> int:
    argv = shlex.split(command)
    if not argv:
        return 0
    prog, rest = argv[0], argv[1:]
    if prog == "taskset":
        if len(rest) < 2:
            return fail("taskset: usage: taskset MASK COMMAND", 1)
        int(rest[0], 16)
        return shell(shlex.join(rest[1:]))
    if prog == "mkdir":
        for p in (a for a in rest if not a.startswith("-")):
            os.makedirs(local(p), exist_ok=True)
        return 0
    if prog == "rm":
        for p in (a for a in rest if not a.startswith("-")):
            target = local(p)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        return 0
    if prog == "chmod":
        os.chmod(local(rest[1]), int(rest[0], 8))
        return 0
    if prog == "ls":
        for p in rest:
            if not os.path.exists(local(p)):
                return fail(f"ls: {p}: No such file or directory", 1)
            print(p)
        return 0
    if prog == "stat":
        path = rest[-1]
        if not os.path.exists(local(path)):
            return fail(f"stat: '{path}': No such file or directory", 1)
        print(os.path.getsize(local(path)))
        return 0
    if prog in ("md5sum", "sha256sum"):
        path = rest[0]
        if not os.path.isfile(local(path)):
            return fail(f"{prog}: {path}: No such file or directory", 1)
        with open(local(path), "rb") as f:
            digest = hashlib.new(prog[:-3], f.read()).hexdigest()
        print(f"{digest}  {path}")
        return 0
    if prog == "getprop":
        print(PROPS.get(rest[0], "") if rest else "")
        return 0
    if prog == "pkill":
        return 0
    if prog.startswith("/") and os.path.isfile(local(prog)):
        return run_benchmark(argv)
    return fail(f"/system/bin/sh: {prog}: inaccessible or not found", 127)


def main(argv: list[str]) -> int:
    log({"argv": argv})
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if not argv:
        return fail("adb: usage: adb [-s SERIAL] COMMAND", 1)
    cmd, rest = argv[0], argv[1:]
    attached = [] if device_gone() else devices()
    if cmd == "devices":
        print("List of devices attached")
        for s, state in attached:
            print(f"{s}\t{state}" + (" product:fake model:Fake_Pixel device:fake transport_id:1"
                                    if "-l" in rest and state == "device" else ""))
        print()
        return 0
    if not attached:
        return fail(f"adb: device '{serial}' not found" if serial else "error: no devices/emulators found", 1)
    chosen = [d for d in attached if serial is None or d[0] == serial]
    if not chosen:
        return fail(f"adb: device '{serial}' not found", 1)
    if chosen[0][1] == "unauthorized":
        return fail("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                    "Try 'adb kill-server' if that seems wrong.", 1)
    if cmd == "push":
        src, dest = rest[0], rest[1]
        os.makedirs(os.path.dirname(local(dest)), exist_ok=True)
        shutil.copyfile(src, local(dest))
        os.chmod(local(dest), 0o644)
        print(f"{src}: 1 file pushed, 0 skipped. 12.3 MB/s ({os.path.getsize(src)} bytes in 0.001s)")
        return 0
    if cmd == "shell":
        return shell(" ".join(rest))
    return fail(f"adb: unknown command {cmd}", 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
