"""Run the `flowforge` CLI as a user would: a separate process, with its exit code,
its JSON output, its wall time and its own peak resident memory."""

from __future__ import annotations

import json
import os
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


def run_cli(*args: str, timeout: float = 60.0, stdin: str | None = None) -> CliResult:
    """`flowforge ARGS...` in a child process, reaped with wait4 for its own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowforge.control.cli", *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode == -9 and seconds >= timeout:
        raise AssertionError(f"flowforge {' '.join(args)} did not finish in {timeout} s")
    return CliResult(proc.returncode, stdout, stderr, seconds, usage.ru_maxrss / 1024)
