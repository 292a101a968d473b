"""Who is calling, and may they: bearer tokens and project roles.

Every RPC calls `Authority.check(context, request.project, needed)` first. The token comes
from the `authorization: Bearer <token>` metadata. A token belongs to one project with one
role; roles are ordered, and a higher one includes every lower one. An empty project in
a request means the token's own project.

The server's `local_token` (made per server, never stored) is an admin of every project:
the in-process CLI uses it, and its caller is the local user.
"""

from __future__ import annotations

import getpass
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Final

import grpc

from flowforge.control.storage.tokens import TOKEN_PREFIX, TokenRefused, TokenStore

DEFAULT_PROJECT: Final = "default"
LOCAL_TOKEN_ID: Final = "local"
_TOUCH_EVERY_S: Final = 60.0  # last_used_at is a write; once a minute per token is plenty


class Role(IntEnum):
    """Ordered: a higher role includes every lower one."""

    VIEWER = 1
    OPERATOR = 2
    PUBLISHER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {text!r}: one of {names}") from None


@dataclass(frozen=True)
class Caller:
    """An authenticated caller. `project` is the project this call acts in (the token's
    own, or the one the request named, for the local token)."""

    token_id: str
    name: str
    project: str
    role: Role

    @property
    def actor(self) -> str:
        """Who did it, as audit rows record it."""
        if self.token_id == LOCAL_TOKEN_ID:
            return f"local:{self.name}"
        return f"token:{self.token_id}({self.name})"


def new_local_token() -> str:
    return f"{TOKEN_PREFIX}_{LOCAL_TOKEN_ID}_{secrets.token_urlsafe(32)}"


def bearer(context: grpc.aio.ServicerContext[object, object]) -> str | None:
    """The bearer token of a call's metadata, if it sent one."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


class Authority:
    """Checks each call's token and role against the token store."""

    def __init__(self, tokens: TokenStore, local_token: str | None = None) -> None:
        self.tokens = tokens
        self.local_token = local_token
        self._touched: dict[str, float] = {}

    async def check(
        self,
        context: grpc.aio.ServicerContext[object, object],
        project: str | None,
        needed: Role,
    ) -> Caller:
        """The caller, if its token is live and its role in `project` is at least `needed`;
        otherwise the call is aborted (UNAUTHENTICATED / PERMISSION_DENIED) with a message
        that says what is needed. project None or "": the token's own project."""
        token = bearer(context)
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no token: send the metadata 'authorization: Bearer <token>' "
                "(an admin makes one with `flowforge token create --project P --role R`)",
            )
        if token == "":
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "the authorization metadata must be 'Bearer <token>'",
            )
        caller = await self._caller(context, token, project or None)
        if caller.role < needed:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this call needs the role {needed.label} (or higher) in project "
                f"{caller.project!r}; token {caller.token_id} ({caller.name}) is "
                f"{caller.role.label}",
            )
        return caller

    async def _caller(
        self,
        context: grpc.aio.ServicerContext[object, object],
        token: str,
        project: str | None,
    ) -> Caller:
        if self.local_token is not None and secrets.compare_digest(token, self.local_token):
            return Caller(LOCAL_TOKEN_ID, getpass.getuser(), project or DEFAULT_PROJECT, Role.ADMIN)
        try:
            record = await self.tokens.authenticate(token)
        except TokenRefused as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if project is not None and project != record.project:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {record.id} ({record.name}) belongs to project {record.project!r}, "
                f"not {project!r}; use a token of {project!r}",
            )
        await self._touch(record.id)
        return Caller(record.id, record.name, record.project, Role.parse(record.role))

    async def _touch(self, token_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(token_id, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S:
            self._touched[token_id] = now
            await self.tokens.touch(token_id, datetime.now(UTC))


__all__ = [
    "DEFAULT_PROJECT",
    "LOCAL_TOKEN_ID",
    "Authority",
    "Caller",
    "Role",
    "bearer",
    "new_local_token",
]
