"""API tokens: `ffp_<id>_<secret>`, of which only the sha256 of the secret is stored.

A token belongs to one project with one role. The id is public (listings, audit rows);
the secret is shown once, at creation, and compared in constant time.

    store = TokenStore(db)
    record, token = await store.create(project="acme", role="operator", name="ci")
    record = await store.authenticate(token)    # TokenRefused says why not
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Index, String, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Mapped, mapped_column

from .database import Database
from .errors import StorageError
from .models import Base, UTCDateTime, _table

TOKEN_PREFIX: Final = "ffp"
ROLE_NAMES: Final = ("viewer", "operator", "publisher", "admin")  # lowest to highest
_ID_BYTES: Final = 6  # 12 hex characters: enough to never collide in one workspace
_SECRET_BYTES: Final = 32


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_project", "project"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    project: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


TOKENS: Final = _table(ApiTokenRow)


class TokenRefused(StorageError):
    """A bearer token that does not authenticate; the message says why (never echoing
    the secret)."""


class UnknownToken(StorageError):
    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"no token {token_id!r} (flowforge token list shows them)")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    project: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _record(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        row.id, row.name, row.project, row.role, row.created_at, row.revoked_at, row.last_used_at
    )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    """(id, secret) of `ffp_<id>_<secret>`; TokenRefused when it has another shape."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id or not secret:
        raise TokenRefused(
            f"not a FlowForge token: expected {TOKEN_PREFIX}_<id>_<secret> "
            "(as `flowforge token create` prints it)"
        )
    return token_id, secret


def _insert(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(TOKENS), row)


def _select(conn: Connection, query: Any) -> list[Row[Any]]:
    return list(conn.execute(query))


def _set(conn: Connection, token_id: str, values: dict[str, Any]) -> int:
    result = conn.execute(update(TOKENS).where(TOKENS.c.id == token_id).values(**values))
    return int(result.rowcount)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, *, project: str, role: str, name: str = "") -> tuple[TokenRecord, str]:
        """A new token: its record and the token text (the only time the secret exists
        outside the caller's hands)."""
        if role not in ROLE_NAMES:
            raise ValueError(f"role must be one of {', '.join(ROLE_NAMES)}, not {role!r}")
        if not project:
            raise ValueError("a token belongs to a project: give its name")
        token_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        row = {
            "id": token_id,
            "name": name or f"{role}@{project}",
            "project": project,
            "role": role,
            "secret_sha256": hash_secret(secret),
            "created_at": datetime.now(UTC),
            "revoked_at": None,
            "last_used_at": None,
        }
        await self.db.transaction(_insert, row)
        return await self.get(token_id), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    async def get(self, token_id: str) -> TokenRecord:
        rows = await self.db.transaction(_select, select(TOKENS).where(TOKENS.c.id == token_id))
        if not rows:
            raise UnknownToken(token_id)
        return _record(rows[0])

    async def list(self, project: str | None = None) -> list[TokenRecord]:
        """Tokens, oldest first (of one project when given)."""
        query = select(TOKENS).order_by(TOKENS.c.created_at, TOKENS.c.id)
        if project is not None:
            query = query.where(TOKENS.c.project == project)
        return [_record(row) for row in await self.db.transaction(_select, query)]

    async def revoke(self, token_id: str) -> TokenRecord:
        """Revoke for good (revoking twice keeps the first time)."""
        record = await self.get(token_id)
        if not record.revoked:
            await self.db.transaction(_set, token_id, {"revoked_at": datetime.now(UTC)})
        return await self.get(token_id)

    async def authenticate(self, token: str) -> TokenRecord:
        """The live token `token` names; TokenRefused for a malformed, unknown, wrong or
        revoked one."""
        token_id, secret = parse_token(token)
        query = select(TOKENS).where(TOKENS.c.id == token_id)
        rows = await self.db.transaction(_select, query)
        # Compare against some digest even for an unknown id, so timing says nothing.
        held = rows[0].secret_sha256 if rows else "0" * 64
        if not hmac.compare_digest(held, hash_secret(secret)) or not rows:
            raise TokenRefused(f"unknown token {token_id!r}, or its secret does not match")
        record = _record(rows[0])
        if record.revoked_at is not None:
            when = record.revoked_at.strftime("%Y-%m-%d %H:%M")
            raise TokenRefused(
                f"token {token_id} ({record.name}) was revoked at {when} UTC; "
                "ask an admin for a new one"
            )
        return record

    async def touch(self, token_id: str, at: datetime) -> None:
        """Record a use (callers throttle this: it is a write)."""
        await self.db.transaction(_set, token_id, {"last_used_at": at})


__all__ = [
    "ROLE_NAMES",
    "TOKENS",
    "TOKEN_PREFIX",
    "TokenRecord",
    "TokenRefused",
    "TokenStore",
    "UnknownToken",
    "hash_secret",
    "parse_token",
]
