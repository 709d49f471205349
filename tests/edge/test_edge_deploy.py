"""edge.deploy to a fake phone (adb test double) and to a Coral folder (fake edgetpu_compiler)."""

from __future__ import annotations

import hashlib
import json

from edge.deploy import main, parse_args
from edge.tflite_model import summarize


def run(argv, capsys):
    code = main(parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_deploy_android_pushes_and_verifies(fake_device, model_path, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)))
    out_json = tmp_path / "deploy.json"
    code, out, err = run([model_path("int8"), "--target", "android", "--adb", fake_device.adb, "--labels",
                          str(labels), "--dest", "/sdcard/models", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert fake_device.files() == ["sdcard/models/int8.tflite", "sdcard/models/labels.txt"]
    report = json.loads(out_json.read_text())
    assert [f["verified"] for f in report["files"]] == [True, True]
    assert report["files"][0]["sha256"] == sha256(model_path("int8"))
    assert "sha256 verified" in out
    # A second deploy refuses to replace the files unless told.
    code, _, err = run([model_path("int8"), "--target", "android", "--adb", fake_device.adb, "--dest",
                        "/sdcard/models"], capsys)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    code, _, _ = run([model_path("int8"), "--target", "android", "--adb", fake_device.adb, "--dest",
                      "/sdcard/models", "--overwrite"], capsys)
    assert code == 0


def test_deploy_android_without_device(fake_device, model_path, capsys):
    fake_device.set(FAKE_ADB_DEVICES="")
    code, _, err = run([model_path("int8"), "--target", "android", "--adb", fake_device.adb], capsys)
    assert code == 1 and "no Android device attached" in err


def test_deploy_rejects_bad_model(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = run([str(bad), "--target", "coral", "--dest", str(tmp_path / "d")], capsys)
    assert code == 1 and "not a .tflite model" in err


def test_deploy_coral_compiles_with_fake_compiler_and_copies(model_path, tmp_path, fake_compiler, capsys):
    dest = tmp_path / "coral"
    out_json = tmp_path / "deploy.json"
    code, out, err = run([model_path("int8"), "--target", "coral", "--dest", str(dest), "--json", str(out_json)],
                         capsys)
    assert code == 0, err
    copied = dest / "int8_edgetpu.tflite"
    assert copied.is_file()
    report = json.loads(out_json.read_text())
    assert report["compile"]["tpu_ops"] == 7 and report["files"][0]["sha256"] == sha256(copied)
    # The fake compiler copies its (batch-pinned) input: the deployed model has a static batch.
    assert summarize(copied).input_tensors()[0].shape_signature == (1, 8, 8, 1)


def test_deploy_coral_without_compiler_says_what_to_install(model_path, tmp_path, no_tools_path, capsys):
    code, _, err = run([model_path("int8"), "--target", "coral", "--dest", str(tmp_path / "d")], capsys)
    assert code == 1 and "apt-get install edgetpu-compiler" in err
    code, _, err = run([model_path("int8"), "--target", "coral", "--dest", str(tmp_path / "d"), "--no-compile"],
                       capsys)
    assert code == 0 and (tmp_path / "d" / "int8.tflite").is_file()


def test_deploy_coral_needs_dest(model_path, capsys):
    code, _, err = run([model_path("int8"), "--target", "coral"], capsys)
    assert code == 1 and "--dest" in err
