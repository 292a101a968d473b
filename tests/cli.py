"""Run the `flowforge` CLI as a user would: a separate process, with its exit code,
its JSON output, its wall time and its own peak resident memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


# Linux keeps a process's peak RSS across exec, and a child forked from the (large)
# test process starts with the test process's peak. So the CLI is started by a small
# launcher process, and its peak is the launcher's view of its own child.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def run_cli(*args: str, timeout: float = 60.0, stdin: str | None = None) -> CliResult:
    """`flowforge ARGS...` in a child process; its exit code, output, time and peak RSS."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        launcher = [sys.executable, "-c", _LAUNCHER]
        started = time.monotonic()
        proc = subprocess.Popen(
            [*launcher, peak.name, sys.executable, "-m", "flowforge.control.cli", *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # so a timeout ends the CLI too, not just the launcher
        )
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            proc.wait()
        finally:
            killer.cancel()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        peak_kib = int(peak.read() or 0)
    if proc.returncode == -signal.SIGKILL and seconds >= timeout:
        raise AssertionError(f"flowforge {' '.join(args)} did not finish in {timeout} s")
    return CliResult(proc.returncode, stdout, stderr, seconds, peak_kib / 1024)
