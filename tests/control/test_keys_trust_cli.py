"""`flowforge keys`, `trust` and `connector pack/sign/verify`, run as a user runs them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner

from flowforge.control.cli import main
from flowforge.runtime import CompileCache, Sandbox, Success
from flowforge.runtime.manifest import parse_manifest
from flowforge.runtime.package import pack, read_package
from flowforge.runtime.trust import TrustStore
from tests.cli import CliResult, run_cli

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh config folder (keys) and workspace (trust store) for every test."""
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FLOWFORGE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv("FLOWFORGE_KEY_PASSPHRASE", raising=False)


def ok(*args: str, stdin: str | None = None) -> CliResult:
    result = run_cli(*args, stdin=stdin)
    assert result.code == 0, result.stderr
    return result


@pytest.fixture
def unsigned(tmp_path: Path) -> Path:
    manifest = parse_manifest(
        {
            "name": "acme/echo",
            "version": "1.0.0",
            "description": "Returns its input",
            "language": "zig",
            "license": "MIT",
        }
    )
    component = bytes(wasmtime.wat2wasm((WAT / "echo.wat").read_text()))
    path = tmp_path / "echo-1.0.0.ffpkg"
    path.write_bytes(pack(manifest, component))
    return path


def test_keys_new_writes_a_private_0600_key_and_lists_it(tmp_path: Path) -> None:
    ok("keys", "new", "release")
    folder = tmp_path / "config" / "keys"
    assert stat.S_IMODE(os.stat(folder / "release.key").st_mode) == 0o600
    assert (folder / "release.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    [listed] = ok("keys", "list", "--output", "json").json
    assert listed["name"] == "release"
    assert listed["encrypted"] is False
    line = ok("keys", "export", "release").stdout.strip()
    assert line == (folder / "release.pub").read_text().strip()
    algorithm, _, fingerprint = line.split()
    assert (algorithm, fingerprint) == ("ed25519", listed["fingerprint"])


def test_keys_new_refuses_to_overwrite(tmp_path: Path) -> None:
    ok("keys", "new", "release")
    before = (tmp_path / "config" / "keys" / "release.key").read_bytes()
    result = run_cli("keys", "new", "release")
    assert result.code == 2
    assert "key 'release' already exists" in result.stderr
    assert (tmp_path / "config" / "keys" / "release.key").read_bytes() == before


def test_passphrase_protected_key_signs_only_with_its_passphrase(
    tmp_path: Path, unsigned: Path
) -> None:
    ok("keys", "new", "locked", "--passphrase-stdin", stdin="correct horse\n")
    key_file = tmp_path / "config" / "keys" / "locked.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert ok("keys", "list", "--output", "json").json[0]["encrypted"] is True

    missing = run_cli("connector", "sign", str(unsigned), "--key", "locked")
    assert missing.code == 2
    assert "key 'locked' is encrypted; give its passphrase" in missing.stderr
    wrong = run_cli(
        "connector", "sign", str(unsigned), "--key", "locked", "--passphrase-stdin", stdin="nope\n"
    )
    assert wrong.code == 2
    assert "wrong passphrase for key 'locked'" in wrong.stderr
    assert read_package(unsigned).signature is None  # untouched

    sign = ["connector", "sign", str(unsigned), "--key", "locked", "--passphrase-stdin"]
    ok(*sign, stdin="correct horse\n")
    assert read_package(unsigned).signature is not None


def test_sign_takes_the_passphrase_from_the_environment(
    unsigned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok("keys", "new", "locked", "--passphrase-stdin", stdin="s3cret\n")
    monkeypatch.setenv("FLOWFORGE_KEY_PASSPHRASE", "s3cret")
    result = ok("connector", "sign", str(unsigned), "--key", "locked")
    assert "signed acme/echo@1.0.0" in result.stdout


def test_sign_trust_verify_revoke(tmp_path: Path, unsigned: Path) -> None:
    ok("keys", "new", "release")
    public = ok("keys", "export", "release").stdout.strip()
    fingerprint = public.split()[2]
    ok("connector", "sign", str(unsigned), "--key", "release")

    untrusted = run_cli("connector", "verify", str(unsigned), "--output", "json")
    assert untrusted.code == 1
    error = untrusted.json["error"]
    assert error["kind"] == "refused"
    assert f"refused acme/echo@1.0.0, signed by key {fingerprint}" in error["message"]
    assert "not trusted for publisher acme" in error["message"]

    assert "trusted:" in ok("trust", "add", public, "--publisher", "acme").stdout
    assert "already trusted" in ok("trust", "add", public, "--publisher", "acme").stdout
    store = tmp_path / "workspace" / "trust.json"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600

    doc = ok("connector", "verify", str(unsigned), "--output", "json").json
    assert doc["ok"] is True
    assert (doc["name"], doc["version"], doc["publisher"]) == ("acme/echo", "1.0.0", "acme")
    assert doc["fingerprint"] == fingerprint
    assert doc["component_sha256"] == read_package(unsigned).manifest.component_sha256
    text = ok("connector", "verify", str(unsigned)).stdout
    assert "verified acme/echo@1.0.0" in text
    assert fingerprint in text

    [entry] = ok("trust", "list", "--output", "json").json
    assert entry["publisher"] == "acme"
    assert entry["revoked_at"] is None

    ok("trust", "revoke", fingerprint)
    revoked = run_cli("connector", "verify", str(unsigned))
    assert revoked.code == 1
    assert f"signed by key {fingerprint}: the key was revoked at" in revoked.stderr
    assert ok("trust", "list", "--output", "json").json[0]["revoked_at"] is not None


def test_workspace_option_overrides_the_environment(tmp_path: Path, unsigned: Path) -> None:
    ok("keys", "new", "release")
    pub = tmp_path / "config" / "keys" / "release.pub"
    other = tmp_path / "elsewhere"
    ok("trust", "add", str(pub), "--publisher", "acme", "--workspace", str(other))
    ok("connector", "sign", str(unsigned), "--key", "release")
    ok("connector", "verify", str(unsigned), "--workspace", str(other))
    assert run_cli("connector", "verify", str(unsigned)).code == 1


def test_trust_add_refuses_a_damaged_key_line() -> None:
    ok("keys", "new", "release")
    algorithm, key, fingerprint = ok("keys", "export", "release").stdout.split()
    damaged = f"{algorithm} {key} {fingerprint[:-1]}0"
    if damaged.endswith(fingerprint):  # the last digit was already 0
        damaged = f"{algorithm} {key} {fingerprint[:-1]}1"
    result = run_cli("trust", "add", damaged, "--publisher", "acme")
    assert result.code == 2
    assert "does not match the key" in result.stderr


def test_verify_refuses_an_unsigned_package(unsigned: Path) -> None:
    result = run_cli("connector", "verify", str(unsigned))
    assert result.code == 1
    assert "refused acme/echo@1.0.0, unsigned: the package is not signed" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "new"],
        ["keys", "list"],
        ["keys", "export"],
        ["trust", "add"],
        ["trust", "list"],
        ["trust", "revoke"],
        ["connector", "pack"],
        ["connector", "sign"],
        ["connector", "verify"],
    ],
)
def test_commands_show_an_example_in_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


def test_new_pack_sign_trust_verify_run(tmp_path: Path) -> None:
    """The author's path end to end with a real connector built by the Zig toolchain."""
    ok("connector", "new", "hello", "--lang", "zig", "--publisher", "acme", "--dir", str(tmp_path))
    folder = tmp_path / "hello"
    packed = ok("connector", "pack", str(folder), "--output", "json").json
    package = Path(packed["path"])
    assert package == folder / "dist" / f"hello-{packed['version']}.ffpkg"
    ok("keys", "new", "release")
    ok("connector", "sign", str(package), "--key", "release")
    ok("trust", "add", ok("keys", "export", "release").stdout.strip(), "--publisher", "acme")
    assert ok("connector", "verify", str(package), "--output", "json").json["ok"] is True

    sandbox = Sandbox(CompileCache(tmp_path / "compiled"))
    loaded = sandbox.load_package(package, TrustStore(tmp_path / "workspace" / "trust.json"))
    example = loaded.package.manifest.examples[0]
    outcome = sandbox.run(
        loaded.component, config=json.dumps(example.config), input=json.dumps(example.input)
    )
    assert isinstance(outcome, Success), outcome
    assert json.loads(outcome.output) == example.expect.output
