"""The whole path a user walks, through the `flowforge` CLI in a child process:
connector folder -> pack (build) -> keys new -> sign -> marketplace publish -> search ->
info -> trust add -> install -> load the installed package and run it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from flowforge.runtime import CompileCache, Sandbox, Success
from flowforge.runtime.trust import TrustStore
from tests.cli import CliResult, run_cli
from tests.marketplace.conftest import ENCODE


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FLOWFORGE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("FLOWFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FLOWFORGE_REGISTRY", raising=False)
    monkeypatch.delenv("FLOWFORGE_KEY_PASSPHRASE", raising=False)


def ok(*args: str) -> CliResult:
    result = run_cli(*args, timeout=180)
    assert result.code == 0, result.stderr
    return result


def connector_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "encode"
    shutil.copytree(ENCODE, folder, ignore=shutil.ignore_patterns("dist"))
    toml = folder / "connector.toml"
    text = toml.read_text().replace('name = "flowforge/encode"', 'name = "acme/encode"')
    toml.write_text(text.replace('version = "0.1.0"', 'version = "1.0.0"', 1))
    return folder


def test_new_build_pack_sign_publish_search_info_install_run(tmp_path: Path) -> None:
    folder = connector_folder(tmp_path)
    ok("connector", "pack", str(folder))
    package = folder / "dist" / "encode-1.0.0.ffpkg"
    ok("keys", "new", "release")
    ok("connector", "sign", str(package), "--key", "release")

    published = ok("marketplace", "publish", str(package), "--output", "json").json
    assert published["created"] and published["info"]["gate"]["installable"]
    assert {f["name"] for f in published["info"]["score"]["factors"]} >= {
        "conformance",
        "footprint",
    }
    # Publishing the same file again is a no-op success.
    assert not ok("marketplace", "publish", str(package), "--output", "json").json["created"]

    [hit] = ok("marketplace", "search", "base64", "--language", "zig", "--output", "json").json
    assert hit["name"] == "acme/encode"
    shown = ok("marketplace", "info", "acme/encode@1.0.0").stdout
    assert "score" in shown and "conformance" in shown and "signed by ed25519:" in shown

    # Installing needs the key in this workspace's trust store.
    refused = run_cli("marketplace", "install", "acme/encode@^1")
    assert refused.code == 1 and "not trusted for publisher acme" in refused.stderr
    pubkey = ok("keys", "export", "release").stdout.strip()
    ok("trust", "add", pubkey, "--publisher", "acme")
    installed = ok("marketplace", "install", "acme/encode@^1", "--output", "json").json
    assert installed["version"] == "1.0.0"
    workspace = tmp_path / "workspace"
    lock = json.loads((workspace / "flowforge.lock").read_text())
    assert lock["packages"]["acme/encode"]["package_sha256"] == installed["package_sha256"]

    # It runs: the installed file loads through the runtime's own verification.
    sandbox = Sandbox(CompileCache(tmp_path / "cache" / "compiled"))
    loaded = sandbox.load_package(Path(installed["path"]), TrustStore(workspace / "trust.json"))
    example = loaded.package.manifest.examples[0]
    outcome = sandbox.run(
        loaded.component, config=json.dumps(example.config), input=json.dumps(example.input)
    )
    assert isinstance(outcome, Success) and json.loads(outcome.output) == example.expect.output
    # The install precompiled it into the runtime's cache (the path the runtime uses).
    assert sandbox.cache.artefact_path(loaded.component.sha256).is_file()

    ok("marketplace", "yank", "acme/encode@1.0.0", "--key", "release")
    audited = ok("audit", "list", "--output", "json").json
    actions = [e["action"] for e in audited if e["action"].startswith("marketplace.")]
    assert actions == ["marketplace.yank", "marketplace.install", "marketplace.publish",
                       "marketplace.publish"]  # fmt: skip
    assert all(e["actor"].startswith("local:") for e in audited)
    assert ok("marketplace", "search", "base64", "--output", "json").json == []
    bundle = tmp_path / "site.ffbundle"
    ok("marketplace", "export", str(bundle))
    other = tmp_path / "other"
    imported = ok(
        "marketplace", "import", str(bundle), "--workspace", str(workspace),
        "--registry", f"sqlite+aiosqlite:///{other / 'r.db'}", "--blobs", str(other / "blobs"),
        "--output", "json",
    ).json  # fmt: skip
    assert [r["outcome"] for r in imported["results"]] == ["published"]
    ok("marketplace", "uninstall", "acme/encode")
    assert not Path(installed["path"]).exists()


def test_refusals_exit_1_with_the_check_named(tmp_path: Path) -> None:
    folder = connector_folder(tmp_path)
    ok("connector", "pack", str(folder))
    package = folder / "dist" / "encode-1.0.0.ffpkg"
    result = run_cli("marketplace", "publish", str(package), "--output", "json")
    assert result.code == 1
    assert "signature check" in result.stderr and "not signed" in result.stderr
    assert result.json["error"]["kind"] == "refused-signature"
    db = tmp_path / "workspace" / "registry" / "registry.db"
    assert db.is_file()  # the registry was created, and holds nothing
    assert not any((tmp_path / "workspace" / "registry" / "blobs").glob("sha256/*/*"))
    usage = run_cli("marketplace", "install", "acme/encode@^x")
    assert usage.code == 2 and "^x" in usage.stderr
    assert "Example" in run_cli("marketplace", "publish", "--help").stdout
    assert os.environ["FLOWFORGE_WORKSPACE"].endswith("workspace")
