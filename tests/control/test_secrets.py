"""Project secrets: AES-256-GCM at rest under a master key from the environment or a 0600
key file, bound to their project and name; and the `flowforge secret` commands, which take
values from stdin only and never print them."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from flowforge.control.secrets import (
    MASTER_KEY_ENV,
    SecretBox,
    SecretError,
    SecretStore,
    load_master_key,
)
from flowforge.control.storage import Database, database_url
from flowforge.control.storage.models import SECRETS
from tests.cli import CliResult, run_cli
from tests.pg import BACKENDS, database_for

KEY = bytes(range(32))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path, "flowforge") as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SecretStore]:
    db = await Database.open(db_url)
    try:
        yield SecretStore(db, SecretBox(KEY))
    finally:
        await db.close()


async def test_set_get_replace_list_remove(store: SecretStore) -> None:
    assert await store.set("ops", "SLACK_TOKEN", "xoxb-1")
    assert not await store.set("ops", "SLACK_TOKEN", "xoxb-2")
    await store.set("ops", "API_KEY", "k")
    await store.set("dev", "SLACK_TOKEN", "dev-token")
    assert await store.get("ops", "SLACK_TOKEN") == "xoxb-2"
    assert await store.get("dev", "SLACK_TOKEN") == "dev-token"
    assert [i.name for i in await store.list("ops")] == ["API_KEY", "SLACK_TOKEN"]
    # A step's grant maps what the connector calls a secret to the project's secret.
    assert await store.resolve("ops", {"token": "SLACK_TOKEN"}) == {"token": "xoxb-2"}
    assert await store.remove("ops", "API_KEY")
    assert not await store.remove("ops", "API_KEY")
    with pytest.raises(SecretError, match="no secret 'API_KEY' in project 'ops'"):
        await store.get("ops", "API_KEY")


async def test_values_are_encrypted_at_rest_and_bound_to_their_row(store: SecretStore) -> None:
    await store.set("ops", "A", "the-value-of-a")
    await store.set("ops", "B", "the-value-of-b")
    table = SECRETS
    rows = await store.db.transaction(lambda conn: {r.name: r for r in conn.execute(select(table))})
    assert b"the-value-of-a" not in rows["A"].ciphertext
    assert len(rows["A"].nonce) == 12
    # B's ciphertext copied onto A's row does not open as A: project+name are bound in.
    swap = (
        update(table)
        .where(table.c.name == "A")
        .values(nonce=rows["B"].nonce, ciphertext=rows["B"].ciphertext)
    )
    await store.db.transaction(lambda conn: conn.execute(swap))
    with pytest.raises(SecretError, match="altered") as caught:
        await store.get("ops", "A")
    assert "the-value-of" not in str(caught.value)


async def test_a_different_master_key_is_named_not_guessed(store: SecretStore) -> None:
    await store.set("ops", "A", "v")
    other = SecretStore(store.db, SecretBox(bytes(32)))
    with pytest.raises(SecretError, match="encrypted under master key"):
        await other.get("ops", "A")


async def test_names_are_checked(store: SecretStore) -> None:
    with pytest.raises(SecretError, match="secret name"):
        await store.set("ops", "bad name", "v")
    with pytest.raises(SecretError, match="project"):
        await store.set("../x", "A", "v")
    with pytest.raises(SecretError, match="empty"):
        await store.set("ops", "A", "")


def test_master_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, base64.b64encode(KEY).decode())
    assert load_master_key(tmp_path) == KEY
    assert not (tmp_path / "master.key").exists()
    monkeypatch.setenv(MASTER_KEY_ENV, base64.b64encode(b"short").decode())
    with pytest.raises(SecretError, match="5 bytes, not 32"):
        load_master_key(tmp_path)
    monkeypatch.setenv(MASTER_KEY_ENV, "not base64!")
    with pytest.raises(SecretError, match="not base64"):
        load_master_key(tmp_path)


def test_master_key_file_is_created_0600_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    config = tmp_path / "config"
    key = load_master_key(config)
    path = config / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32 and load_master_key(config) == key
    assert [p.name for p in config.iterdir()] == ["master.key"]  # no temporary left behind
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="readable by others"):
        load_master_key(config)


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("FLOWFORGE_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv("FLOWFORGE_DATABASE", raising=False)
    return tmp_path


def cli(*args: str, stdin: str | None = None) -> CliResult:
    return run_cli("secret", *args, stdin=stdin)


def test_cli_set_list_rm(homes: Path) -> None:
    value = "s3cr3t-value-é"
    result = cli("set", "SLACK_TOKEN", "--project", "ops", stdin=value + "\n")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "stored: ops/SLACK_TOKEN"
    assert stat.S_IMODE((homes / "config" / "master.key").stat().st_mode) == 0o600
    assert (homes / "workspace" / "flowforge.db").exists()
    assert cli("set", "SLACK_TOKEN", "--project", "ops", stdin="v2").stdout.startswith("replaced")

    listed = cli("list", "--project", "ops", "--output", "json")
    assert listed.code == 0, listed.stderr
    assert [s["name"] for s in listed.json["secrets"]] == ["SLACK_TOKEN"]
    table = cli("list", "--project", "ops")
    for output in (listed, table):
        assert value not in output.stdout + output.stderr and "v2" not in output.stdout
    assert "no secrets" in cli("list", "--project", "dev").stdout

    assert cli("rm", "SLACK_TOKEN", "--project", "ops").code == 0
    missing = cli("rm", "SLACK_TOKEN", "--project", "ops")
    assert missing.code == 1 and "no secret 'SLACK_TOKEN'" in missing.stderr


def test_cli_value_comes_from_stdin_only(homes: Path) -> None:
    # There is no argument for the value: an extra one is a usage error.
    extra = cli("set", "A", "the-value", stdin="x")
    assert extra.code == 2 and "the-value" not in extra.stdout
    empty = cli("set", "A", stdin="")
    assert empty.code == 2 and "stdin held no value" in empty.stderr


def test_cli_stored_value_is_the_stdin_value(homes: Path) -> None:
    assert cli("set", "MULTI", "--project", "p", stdin="line1\nline2\n").code == 0

    async def read() -> str:
        db = await Database.open(database_url(homes / "workspace"))
        try:
            store = SecretStore(db, SecretBox(load_master_key(homes / "config")))
            return await store.get("p", "MULTI")
        finally:
            await db.close()

    assert asyncio.run(read()) == "line1\nline2"
