"""The issue 4 path through a served registry, every step a `flowforge` child process:
pack -> keys new -> sign -> `marketplace serve` -> publish, search, info, download and
install with `--server` and tokens -> the installed package runs. The served registry
lives apart from the client's workspace, so nothing can fall back to a local one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowforge.runtime import CompileCache, Sandbox, Success
from flowforge.runtime.trust import TrustStore
from tests.cli import CliResult, run_cli
from tests.marketplace.test_cli_flow import connector_folder, homes, ok

__all__ = ["homes"]  # the autouse fixture: config, workspace and cache under tmp_path


@contextmanager
def served(server_workspace: Path, *args: str) -> Iterator[str]:
    """`flowforge marketplace serve` in a child process; yields the address it printed.
    Stops it with SIGTERM and expects a clean exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowforge.control.cli", "marketplace", "serve",
         "--listen", "127.0.0.1:0", "--workspace", str(server_workspace), "--output", "json",
         *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"serve exited ({proc.wait()}): {proc.stderr.read()}")  # type: ignore[union-attr]
        yield str(json.loads(line)["address"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read() if proc.stderr else ""


def token(server_workspace: Path, role: str) -> str:
    made = ok("token", "create", "--project", "acme", "--role", role,
              "--workspace", str(server_workspace), "--output", "json").json  # fmt: skip
    return str(made["token"])


def test_publish_search_info_install_through_a_served_registry(tmp_path: Path) -> None:
    folder = connector_folder(tmp_path)
    ok("connector", "pack", str(folder))
    package = folder / "dist" / "encode-1.0.0.ffpkg"
    ok("keys", "new", "release")
    ok("connector", "sign", str(package), "--key", "release")

    server_ws = tmp_path / "server"
    publisher, viewer = token(server_ws, "publisher"), token(server_ws, "viewer")
    registry = tmp_path / "served"
    with served(
        server_ws, "--registry", f"sqlite+aiosqlite:///{registry / 'r.db'}",
        "--blobs", str(registry / "blobs"),
    ) as address:  # fmt: skip

        def client(*args: str, who: str = viewer) -> CliResult:
            return run_cli(*args, "--server", address, "--token", who, timeout=180)

        def good(*args: str, who: str = viewer) -> CliResult:
            result = client(*args, who=who)
            assert result.code == 0, result.stderr
            return result

        # Publishing needs the publisher role; the key is found among ours (keys list).
        denied = client("marketplace", "publish", str(package), "--output", "json")
        assert denied.code == 1 and denied.json["error"]["kind"] == "permission-denied"
        assert "publisher" in denied.stderr
        published = good("marketplace", "publish", str(package), "--output", "json", who=publisher)
        assert published.json["created"] and published.json["info"]["gate"]["installable"]
        assert any((registry / "blobs").rglob("*")), "the package is in the served registry"

        [hit] = good(
            "marketplace", "search", "base64", "--language", "zig", "--output", "json"
        ).json
        assert hit["name"] == "acme/encode" and hit["version"] == "1.0.0"
        shown = good("marketplace", "info", "acme/encode@1.0.0").stdout
        assert "conformance" in shown and "signed by ed25519:" in shown
        downloaded = good("marketplace", "download", "acme/encode@^1", "--to", str(tmp_path),
                          "--output", "json").json  # fmt: skip
        assert Path(downloaded["path"]).read_bytes() == package.read_bytes()

        # Install checks the package against this workspace's trust store, as locally.
        refused = client("marketplace", "install", "acme/encode@^1")
        assert refused.code == 1 and "not trusted for publisher acme" in refused.stderr
        ok("trust", "add", ok("keys", "export", "release").stdout.strip(), "--publisher", "acme")
        installed = good("marketplace", "install", "acme/encode@^1", "--output", "json").json
        assert installed["version"] == "1.0.0"

        # No token, or a wrong flag combination: clear errors.
        anonymous = run_cli("marketplace", "search", "--server", address, "--output", "json")
        assert anonymous.code == 1 and anonymous.json["error"]["kind"] == "unauthenticated"
        assert "--token" in anonymous.stderr
        mixed = client("marketplace", "search", "--registry", "sqlite+aiosqlite:///x.db")
        assert mixed.code == 2 and "--registry and --blobs name a local registry" in mixed.stderr

    # The server's log names the token that published; this workspace's, who installed.
    [publish] = ok("audit", "list", "--action", "marketplace.publish",
                   "--workspace", str(server_ws), "--output", "json").json  # fmt: skip
    assert publish["target"] == "acme/encode@1.0.0" and publish["actor"].startswith("token:")
    [install] = ok("audit", "list", "--action", "marketplace.install", "--output", "json").json
    assert install["actor"].startswith("local:") and install["details"]["registry"] == address
    assert install["details"]["package_sha256"] == installed["package_sha256"]

    workspace = Path(os.environ["FLOWFORGE_WORKSPACE"])
    lock = json.loads((workspace / "flowforge.lock").read_text())
    assert lock["packages"]["acme/encode"]["package_sha256"] == installed["package_sha256"]
    sandbox = Sandbox(CompileCache(tmp_path / "cache" / "compiled"))
    loaded = sandbox.load_package(Path(installed["path"]), TrustStore(workspace / "trust.json"))
    example = loaded.package.manifest.examples[0]
    outcome = sandbox.run(
        loaded.component, config=json.dumps(example.config), input=json.dumps(example.input)
    )
    assert isinstance(outcome, Success) and json.loads(outcome.output) == example.expect.output
    assert sandbox.cache.artefact_path(loaded.component.sha256).is_file()


def test_serve_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    result = run_cli("marketplace", "serve", "--listen", "nowhere", "--workspace", str(tmp_path))
    assert result.code == 2 and "HOST:PORT" in result.stderr
    assert "Example:" in run_cli("marketplace", "serve", "--help").stdout


@pytest.mark.parametrize("command", ["search", "info", "publish", "install", "download"])
def test_served_commands_document_server(command: str) -> None:
    shown = run_cli("marketplace", command, "--help").stdout
    assert "--server" in shown and "--token" in shown
