"""A small ``adb`` client: devices, push, quoted remote shell commands, checksums.

Uses the ``adb`` command-line tool (Debian package ``adb``) through argument
lists, never through a local shell. ``adb shell`` joins its arguments into one string
that the device's ``sh`` parses, so :meth:`Adb.shell` takes an argument list and
quotes every element with :func:`shlex.quote` before sending it. Exit statuses
of remote commands need the shell protocol v2 (Android 7 and later).

Failures are typed so callers can stop cleanly and keep what they measured:
:class:`AdbNotFoundError`, :class:`NoDeviceError`, :class:`DeviceUnauthorizedError`,
:class:`DeviceLostError`, :class:`AdbTimeoutError`, :class:`RemoteCommandError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
from typing import Any

from edge._common import EdgeError

logger = logging.getLogger("edge.adb")

ADB_ENV = "ADB"
INSTALL_ADB = "install the Debian package adb (apt-get install adb) or pass --adb PATH / set $ADB"


class AdbError(EdgeError):
    """Any failure talking to a device through adb."""


class AdbNotFoundError(AdbError):
    """The adb executable is missing."""


class NoDeviceError(AdbError):
    """No usable device is attached (or the requested serial is absent)."""


class DeviceUnauthorizedError(AdbError):
    """The device has not accepted this computer's USB-debugging key."""


class DeviceLostError(AdbError):
    """The device went away (unplugged, rebooted, offline) during the session."""


class AdbTimeoutError(AdbError):
    """An adb command did not finish in time."""


class RemoteCommandError(AdbError):
    """A remote command exited with a non-zero status."""

    def __init__(self, message: str, returncode: int, output: str):
        super().__init__(message)
        self.returncode = returncode
        self.output = output


@dataclasses.dataclass(frozen=True)
class Device:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # "device", "unauthorized", "offline", "recovery", ...
    details: dict[str, str] = dataclasses.field(default_factory=dict)


def find_adb(path: str | None = None) -> str:
    """Returns the adb executable: ``path``, ``$ADB`` or ``adb`` on PATH.

    Raises:
        AdbNotFoundError: With what to install.
    """
    candidate = path or os.environ.get(ADB_ENV)
    if candidate:
        resolved = shutil.which(candidate) if os.sep not in candidate else candidate
        if resolved and os.path.isfile(resolved) and os.access(resolved, os.X_OK):
            return resolved
        raise AdbNotFoundError(f"adb executable {candidate!r} not found or not executable: {INSTALL_ADB}")
    found = shutil.which("adb")
    if not found:
        raise AdbNotFoundError(f"adb not found: {INSTALL_ADB}")
    return found


def parse_devices(text: str) -> list[Device]:
    """Parses the output of ``adb devices [-l]``."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        details = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        devices.append(Device(serial=parts[0], state=parts[1], details=details))
    return devices


def choose_device(devices: list[Device], serial: str | None = None) -> Device:
    """Picks the device to use, without prompting.

    Raises:
        NoDeviceError: No device, the serial is absent, or several devices and no serial.
        DeviceUnauthorizedError: The chosen device is unauthorized.
    """
    if serial is not None:
        matches = [d for d in devices if d.serial == serial]
        if not matches:
            listed = ", ".join(f"{d.serial} ({d.state})" for d in devices) or "none"
            raise NoDeviceError(f"device {serial!r} is not attached; attached: {listed}")
        device = matches[0]
    else:
        if not devices:
            raise NoDeviceError("no Android device attached: connect a phone with USB debugging enabled "
                                "(check with `adb devices`)")
        ready = [d for d in devices if d.state == "device"]
        if len(ready) > 1:
            raise NoDeviceError("several devices attached (" + ", ".join(d.serial for d in ready)
                                + "); choose one with --serial")
        device = ready[0] if ready else devices[0]
    if device.state == "unauthorized":
        raise DeviceUnauthorizedError(
            f"device {device.serial} is unauthorized: unlock it and accept the 'Allow USB debugging' "
            "prompt, then retry")
    if device.state != "device":
        raise NoDeviceError(f"device {device.serial} is {device.state}, not ready")
    return device


# adb's own messages when the device vanished (adb prints them as "adb: ..." or "error: ...").
_LOST = re.compile(r"(?:adb|error): (?:error: )?(?:device(?: '[^']*')? not found|device offline|"
                   r"no devices/emulators found|closed|device still connecting|protocol fault|failed to get feature set)",
                   re.I)


class Adb:
    """Runs adb commands against one device.

    Args:
        adb: The adb executable (see :func:`find_adb`).
        serial: Device serial; None for commands that need no device.
        timeout: Default seconds per command.
    """

    def __init__(self, adb: str, serial: str | None = None, timeout: float = 120.0):
        self.adb = adb
        self.serial = serial
        self.timeout = timeout

    def _argv(self, args: list[str]) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def run(self, args: list[str], timeout: float | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        """Runs ``adb [-s SERIAL] ARGS``; classifies device failures.

        Raises:
            AdbTimeoutError, DeviceLostError, DeviceUnauthorizedError, RemoteCommandError.
        """
        argv = self._argv(args)
        logger.debug("adb: %s", argv)
        limit = self.timeout if timeout is None else timeout
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired as e:
            raise AdbTimeoutError(f"`adb {' '.join(args[:2])}` timed out after {limit:g} s") from e
        except OSError as e:
            raise AdbNotFoundError(f"cannot run {self.adb}: {e}; {INSTALL_ADB}") from e
        output = (proc.stdout or "") + (proc.stderr or "")
        if proc.returncode != 0:
            first_lines = " ".join(output.strip().splitlines()[:2])
            if "unauthorized" in output.lower():
                raise DeviceUnauthorizedError(
                    f"device {self.serial or ''} is unauthorized: accept the USB debugging prompt ({first_lines})")
            if _LOST.search(output):
                raise DeviceLostError(f"device {self.serial or ''} is gone: {first_lines}")
            if check:
                raise RemoteCommandError(f"`adb {' '.join(args[:3])}` failed with exit {proc.returncode}: "
                                         f"{first_lines}", proc.returncode, output)
        return proc

    def devices(self) -> list[Device]:
        """Lists attached devices (``adb devices -l``)."""
        saved, self.serial = self.serial, None
        try:
            proc = self.run(["devices", "-l"])
        except DeviceLostError:
            return []
        finally:
            self.serial = saved
        return parse_devices(proc.stdout)

    def shell(self, argv: list[str], timeout: float | None = None, check: bool = True
              ) -> subprocess.CompletedProcess:
        """Runs one remote command; every element of ``argv`` is shell-quoted.

        Args:
            argv: Program and arguments, e.g. ``["ls", "/data/local/tmp/my model.tflite"]``.
            timeout: Seconds before giving up.
            check: Raise :class:`RemoteCommandError` on a non-zero exit status.
        """
        command = " ".join(shlex.quote(str(a)) for a in argv)
        return self.run(["shell", command], timeout=timeout, check=check)

    def push(self, local: str | os.PathLike, remote: str, timeout: float | None = None) -> None:
        """Copies a local file to the device."""
        self.run(["push", os.fspath(local), remote], timeout=timeout)

    def getprop(self, key: str) -> str:
        """Reads one Android system property ('' when unset)."""
        return self.shell(["getprop", key], check=False).stdout.strip()

    def file_size(self, remote: str) -> int:
        """Size in bytes of a remote file."""
        out = self.shell(["stat", "-c", "%s", remote]).stdout.strip()
        try:
            return int(out.split()[0])
        except (ValueError, IndexError) as e:
            raise RemoteCommandError(f"cannot read the size of {remote}: {out!r}", 0, out) from e

    def checksum(self, remote: str) -> tuple[str, str]:
        """``(algorithm, hex digest)`` of a remote file: sha256sum, or md5sum when absent."""
        for algo, tool in (("sha256", "sha256sum"), ("md5", "md5sum")):
            proc = self.shell([tool, remote], check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                return algo, proc.stdout.split()[0].lower()
        raise RemoteCommandError(f"neither sha256sum nor md5sum works on the device for {remote}", 1, "")

    def device_info(self) -> dict[str, Any]:
        """Serial, model, Android version and ABI of the device."""
        return {
            "serial": self.serial,
            "model": self.getprop("ro.product.model"),
            "android": self.getprop("ro.build.version.release"),
            "abi": self.getprop("ro.product.cpu.abi"),
        }


def local_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a local file."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def connect(adb_path: str | None, serial: str | None, timeout: float = 120.0) -> Adb:
    """Finds adb, picks the device and returns a client bound to it.

    Raises:
        AdbNotFoundError, NoDeviceError, DeviceUnauthorizedError.
    """
    adb = Adb(find_adb(adb_path), timeout=timeout)
    device = choose_device(adb.devices(), serial)
    adb.serial = device.serial
    return adb
