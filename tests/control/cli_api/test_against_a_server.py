"""The CLI against a real `flowforge server` on a free port, with tokens made by
`flowforge token create`: the same commands, now over the network, with roles, TLS, and
a watch that survives the server restarting."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowforge.control.api.client import connect
from flowforge.control.storage import Event, RunState, RunStatus, Storage
from flowforge.control.storage import EventType as E
from flowforge.proto.v1 import run_pb2
from tests.cli import CliResult, run_cli
from tests.control.api.test_server import _self_signed
from tests.pg import fresh_database
from tests.runtime.bus.conftest import NATS_URL, delete_streams, new_prefix
from tests.runtime.bus.test_worker_process import WorkerProcess

from .conftest import Workspace

CLI = [sys.executable, "-m", "flowforge.control.cli"]


@contextmanager
def serving(workspace: Workspace, *extra: str, listen: str = "127.0.0.1:0") -> Iterator[str]:
    """`flowforge server` in a child process; its address while the block runs."""
    with server_process(workspace, *extra, listen=listen) as (_proc, address):
        yield address


@contextmanager
def server_process(
    workspace: Workspace, *extra: str, listen: str = "127.0.0.1:0"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`flowforge server` in a child process, and its address; stopped with SIGTERM at
    the end of the block unless it has ended already. Its log goes to a file (a pipe
    nobody reads would stall it once full)."""
    args = [
        *CLI,
        "server",
        "--listen",
        listen,
        "--output",
        "json",
        "--workspace",
        str(workspace.root),
    ]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([*args, *extra], stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                proc.wait(30)
                log.seek(0)
                raise AssertionError(f"the server did not start: {log.read()}")
            yield proc, str(json.loads(line)["address"])
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def token(workspace: Workspace, role: str, project: str = "default") -> str:
    made = workspace.cli(
        "token", "create", "--project", project, "--role", role, "--output", "json"
    )
    assert made.code == 0, made.stderr
    return str(made.json["token"])


class Remote:
    def __init__(self, workspace: Workspace, address: str, token: str) -> None:
        self.workspace, self.address, self.token = workspace, address, token

    def cli(self, *args: str, token: str | None = None, timeout: float = 120.0) -> CliResult:
        who = ["--server", self.address, "--token", token or self.token]
        return self.workspace.cli(*args, *who, timeout=timeout)


def test_the_full_path_against_a_server_with_roles(workspace: Workspace) -> None:
    publisher = token(workspace, "publisher")
    viewer = token(workspace, "viewer")
    elsewhere = token(workspace, "admin", project="other")
    with serving(workspace) as address:
        remote = Remote(workspace, address, publisher)
        submitted = remote.cli("workflow", "submit", str(workspace.files / "trivial3.yaml"))
        assert submitted.code == 0, submitted.stderr
        assert "trivial3@" in submitted.stdout

        started = remote.cli("run", "start", "trivial3", "--input", '{"n": 5}', "--output", "json")
        assert started.code == 0, started.stderr
        run_id = started.json["id"]  # a server carries the run on: start returns at once
        watched = remote.cli("run", "watch", run_id)
        assert watched.code == 0, watched.stderr
        assert watched.stdout.count(": succeeded in ") == 3
        assert f"run {run_id} succeeded" in watched.stdout

        got = remote.cli("run", "get", run_id, "--output", "json", token=viewer)
        assert got.code == 0 and got.json["status"] == "succeeded"
        assert got.json["output"] is not None
        listed = remote.cli(
            "run", "list", "--workflow", "trivial3", "--output", "json", token=viewer
        )
        assert [r["id"] for r in listed.json["runs"]] == [run_id]
        logs = remote.cli("run", "logs", run_id, token=viewer)
        assert logs.code == 0, logs.stderr

        refused = remote.cli("run", "start", "trivial3", token=viewer)
        assert refused.code == 1
        assert "PERMISSION_DENIED" in refused.stderr and "hint: use a token with" in refused.stderr
        other = remote.cli("run", "get", run_id, token=elsewhere)
        assert other.code == 1 and "PERMISSION_DENIED" in other.stderr
        bad = remote.cli("run", "get", run_id, token="fft_not-a-real-token")
        assert bad.code == 1
        assert "error: UNAUTHENTICATED" in bad.stderr
        assert "hint: set --token or $FLOWFORGE_TOKEN" in bad.stderr
        none = run_cli(
            "run", "get", run_id, "--server", address, "--workspace", str(workspace.root)
        )
        assert none.code == 1 and "UNAUTHENTICATED" in none.stderr

        invalid = remote.cli(
            "workflow", "submit", str(workspace.files / "broken.yaml"), "--output", "yaml"
        )
        assert invalid.code == 2
        assert ":5:" in invalid.stderr and "nope" in invalid.stderr
        assert "kind: invalid-argument" in invalid.stdout


def test_approve_reject_cancel_through_a_server_from_the_environment(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = token(workspace, "operator")
    publisher = token(workspace, "publisher")
    with serving(workspace) as address:
        monkeypatch.setenv("FLOWFORGE_SERVER", address)  # no --server: the environment says
        monkeypatch.setenv("FLOWFORGE_TOKEN", publisher)
        assert workspace.cli("workflow", "submit", str(workspace.files / "approval.yaml")).code == 0
        monkeypatch.setenv("FLOWFORGE_TOKEN", operator)
        ids = []
        for amount in (1, 2, 3):
            started = workspace.cli(
                "run",
                "start",
                "approval",
                "--input",
                json.dumps({"amount": amount}),
                "--output",
                "json",
            )
            assert started.code == 0, started.stderr
            ids.append(started.json["id"])
        for run_id in ids:
            _until_waiting(workspace, address, operator, run_id)
        approved = workspace.cli("run", "approve", ids[0], "sign_off", "--comment", "ok")
        assert approved.code == 0, approved.stderr
        assert f"approved step sign_off of run {ids[0]}" in approved.stdout
        assert workspace.cli("run", "watch", ids[0]).code == 0  # it succeeds
        rejected = workspace.cli("run", "reject", ids[1], "sign_off", "--comment", "no")
        assert rejected.code == 0, rejected.stderr
        failed = workspace.cli("run", "watch", ids[1])
        assert failed.code == 1 and "rejected" in failed.stdout
        cancelled = workspace.cli("run", "cancel", ids[2], "--output", "json")
        assert cancelled.code == 0 and cancelled.json["status"] == "cancelled"
        twice = workspace.cli("run", "cancel", ids[2])
        assert twice.code == 1 and "FAILED_PRECONDITION" in twice.stderr


def _until_waiting(workspace: Workspace, address: str, token: str, run_id: str) -> None:
    """Poll the API itself (a CLI process per poll would cost seconds each)."""

    async def poll() -> None:
        async with connect(address, token, workspace=workspace.root) as api:
            request = run_pb2.GetRunRequest(project="default", run_id=run_id)
            for _ in range(600):
                run = await api.runs.Get(request)
                if any(s.status == "waiting-approval" for s in run.steps):
                    return
                await asyncio.sleep(0.1)
        raise AssertionError(f"run {run_id} never waited for its approval")

    asyncio.run(poll())


def test_a_watch_carries_on_across_a_server_restart(workspace: Workspace, tmp_path: Path) -> None:
    operator = token(workspace, "admin")
    with serving(workspace) as address:
        remote = Remote(workspace, address, operator)
        assert remote.cli("workflow", "submit", str(workspace.files / "approval.yaml")).code == 0
        started = remote.cli(
            "run", "start", "approval", "--input", '{"amount": 4}', "--output", "json"
        )
        run_id = started.json["id"]
        out = tmp_path / "watch.out"
        with open(out, "w") as sink:
            watcher = subprocess.Popen(
                [*CLI, "run", "watch", run_id, "--server", address, "--token", operator,
                 "--workspace", str(workspace.root)],
                stdout=sink, stderr=subprocess.STDOUT, env=os.environ.copy(),
            )  # fmt: skip
        _until_text(out, "sign_off: waiting for approval")
    # The server is gone (SIGTERM); the watch keeps trying until one answers again.
    with serving(workspace, listen=address):
        remote = Remote(workspace, address, operator)
        assert remote.cli("run", "approve", run_id, "sign_off").code == 0
        assert watcher.wait(90) == 0, out.read_text()
    lines = out.read_text().splitlines()
    events = [line.split(" ", 1)[1] for line in lines if line[:2].isdigit()]
    assert events.count("run started") == 1  # nothing shown twice ...
    assert events.count("sign_off: waiting for approval: Pay 4?") == 1
    assert "sign_off: approved by" in " ".join(events)  # ... and nothing lost
    assert events[-1] == "run succeeded"


def _until_text(path: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in path.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared in:\n{path.read_text()}")
        time.sleep(0.1)


def test_tls_with_a_ca_file(workspace: Workspace, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    admin = token(workspace, "admin")
    with serving(workspace, "--tls-cert", str(cert), "--tls-key", str(key)) as address:
        port = address.rpartition(":")[2]
        secure = ["--server", f"https://localhost:{port}", "--token", admin]
        listed = workspace.cli("run", "list", *secure, "--tls-ca", str(cert), "--output", "json")
        assert listed.code == 0, listed.stderr
        assert listed.json["runs"] == []
        untrusted = workspace.cli("run", "list", *secure)  # the system CAs do not know it
        assert untrusted.code == 1 and "UNAVAILABLE" in untrusted.stderr
        plain = workspace.cli("run", "list", "--server", address, "--token", admin)
        assert plain.code == 1 and "UNAVAILABLE" in plain.stderr


@pytest.mark.parametrize("kind", ["embedded", "nats"])
def test_a_control_plane_killed_mid_run_resumes_every_run(
    kind: str, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flowforge server`, killed with SIGKILL while runs are being started and run: the
    next server resumes every run, and each step's result is applied once. Embedded
    (SQLite, steps in the server's process), and over NATS and PostgreSQL (a `flowforge
    worker` process runs the steps)."""
    with _control_plane(kind, workspace, tmp_path) as (url, plane):
        monkeypatch.setenv("FLOWFORGE_DATABASE", url)  # the server's, and the tokens'
        operator = token(workspace, "admin")
        with server_process(workspace, *plane) as (first, address):
            remote = Remote(workspace, address, operator)
            submitted = remote.cli("workflow", "submit", str(workspace.files / "trivial3.yaml"))
            assert submitted.code == 0, submitted.stderr
            inputs = asyncio.run(_start_runs_and_kill(first, address, operator, workspace))
            assert first.wait(10) == -signal.SIGKILL
        assert asyncio.run(_unfinished(url)), "all runs finished before the kill"
        with server_process(workspace, *plane):
            asyncio.run(_until_finished(url, 60))
        logs = asyncio.run(_run_logs(url, list(inputs)))
    for run_id, n in inputs.items():
        state = RunState.fold(logs[run_id])
        assert state.status is RunStatus.SUCCEEDED, (run_id, state.error)
        assert state.steps["c"].output == {"n": n}
        done = [e.data["step"] for e in logs[run_id] if e.type is E.STEP_SUCCEEDED]
        assert sorted(done) == ["a", "b", "c"], (run_id, done)  # each applied once


@contextmanager
def _control_plane(
    kind: str, workspace: Workspace, tmp_path: Path
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """The database URL and `flowforge server` options of an embedded control plane, or
    of one over NATS (a stream prefix of its own, and a worker process) and PostgreSQL."""
    if kind == "embedded":
        yield f"sqlite+aiosqlite:///{tmp_path / 'killed.db'}", ()
        return
    prefix = new_prefix()
    with fresh_database("ff_killed") as url:
        worker = WorkerProcess(workspace, prefix, tmp_path / "config")  # type: ignore[arg-type]
        try:
            yield url, ("--nats", NATS_URL, "--prefix", prefix, "--no-worker")
        finally:
            worker.stop()
            asyncio.run(delete_streams(prefix))


async def _start_runs_and_kill(
    server: subprocess.Popen[str], address: str, operator: str, workspace: Workspace
) -> dict[str, int]:
    """Start 300 runs at once; SIGKILL the server when the 75th is answered, while the
    rest are being started and run. The runs whose start was answered, and their inputs."""
    answered: dict[str, int] = {}
    async with connect(address, operator, workspace=workspace.root) as api:

        async def start(n: int) -> None:
            request = run_pb2.StartRunRequest(
                project="default", workflow="trivial3", input_json=json.dumps({"n": n})
            )
            answered[(await api.runs.Start(request)).id] = n
            if len(answered) == 75:
                server.send_signal(signal.SIGKILL)

        await asyncio.gather(*(start(n) for n in range(300)), return_exceptions=True)
    return answered


async def _unfinished(url: str) -> list[str]:
    storage = await Storage.open(url)
    try:
        return [r.id for r in await storage.events.unfinished_runs()]
    finally:
        await storage.close()


async def _until_finished(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while await _unfinished(url):
        if time.monotonic() > end:
            raise AssertionError(f"runs still unfinished after {timeout} s")
        await asyncio.sleep(0.2)


async def _run_logs(url: str, run_ids: list[str]) -> dict[str, list[Event]]:
    storage = await Storage.open(url)
    try:
        return {run_id: await storage.events.read(run_id) for run_id in run_ids}
    finally:
        await storage.close()
