"""The token store: only hashes kept, every refusal says why, revocation is final; and
the c0002 migration comes off and back on cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from flowforge.control.api.auth import Role
from flowforge.control.storage import CONTROL_SCHEMA, Storage, open_engine
from flowforge.control.storage.tokens import TOKENS, TokenRefused, UnknownToken, hash_secret
from flowforge.marketplace.db import _alembic_config, migrate


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'flowforge.db'}")
    yield opened
    await opened.close()


async def test_only_the_hash_of_the_secret_is_stored(storage: Storage) -> None:
    record, token = await storage.tokens.create(project="acme", role="viewer")
    _prefix, token_id, secret = token.split("_", 2)
    assert token_id == record.id
    rows = await storage.db.transaction(lambda c: list(c.execute(select(TOKENS))))
    assert [row.secret_sha256 for row in rows] == [hash_secret(secret)]
    assert all(secret not in str(tuple(row)) for row in rows)
    assert (await storage.tokens.authenticate(token)).role == "viewer"


@pytest.mark.parametrize(
    ("mangle", "needle"),
    [
        (lambda t: "Bearer-less", "not a FlowForge token"),
        (lambda t: t[:-3] + "xyz", "does not match"),
        (lambda t: "ffp_000000000000_" + t.split("_", 2)[2], "unknown token"),
    ],
)
async def test_a_wrong_token_is_refused_with_a_reason(
    storage: Storage, mangle: object, needle: str
) -> None:
    _record, token = await storage.tokens.create(project="acme", role="admin")
    with pytest.raises(TokenRefused, match=needle):
        await storage.tokens.authenticate(mangle(token))  # type: ignore[operator]


async def test_revocation_is_final_and_last_use_is_recorded(storage: Storage) -> None:
    record, token = await storage.tokens.create(project="acme", role="operator", name="ci")
    at = datetime.now(UTC)
    await storage.tokens.touch(record.id, at)
    assert (await storage.tokens.get(record.id)).last_used_at == at
    first = await storage.tokens.revoke(record.id)
    again = await storage.tokens.revoke(record.id)
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at
    with pytest.raises(TokenRefused, match="was revoked"):
        await storage.tokens.authenticate(token)
    with pytest.raises(UnknownToken):
        await storage.tokens.revoke("nope")
    with pytest.raises(ValueError, match="role must be one of"):
        await storage.tokens.create(project="acme", role="owner")


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.PUBLISHER < Role.ADMIN
    assert Role.parse("Publisher") is Role.PUBLISHER
    with pytest.raises(ValueError, match="viewer, operator, publisher, admin"):
        Role.parse("owner")


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_the_tokens_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    engine = await open_engine(f"sqlite+aiosqlite:///{tmp_path / 'flowforge.db'}")
    mine = {"api_tokens", "project_workflows", "run_retries"}
    try:
        async with engine.begin() as conn:
            assert mine <= await conn.run_sync(_tables)
            await conn.run_sync(
                lambda sync: command.downgrade(_alembic_config(sync, CONTROL_SCHEMA), "c0001")
            )
            assert not mine & await conn.run_sync(_tables)
        await migrate(engine, CONTROL_SCHEMA)
        async with engine.connect() as conn:
            assert mine <= await conn.run_sync(_tables)
    finally:
        await engine.dispose()
