"""Project secrets, encrypted at rest with AES-256-GCM under a master key.

The master key is `$FLOWFORGE_MASTER_KEY` (base64 of 32 bytes) or `<config>/master.key`,
created (mode 0600) on first use. Each value is encrypted with a fresh nonce and the
project and name as associated data, so a ciphertext moved to another row does not open.
Values are never logged and never put into an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from flowforge.runtime.canonical import canonical_json

from .storage.database import Database
from .storage.models import SECRETS as _SECRETS
from .workspace import config_dir

MASTER_KEY_ENV: Final = "FLOWFORGE_MASTER_KEY"
MASTER_KEY_FILE: Final = "master.key"
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class SecretError(Exception):
    """A secret or master key that cannot be stored, found or opened."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as listed: never its value."""

    project: str
    name: str
    created_at: datetime
    updated_at: datetime


def check_project(project: str) -> str:
    if not _PROJECT.match(project):
        raise SecretError(f"project {project!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return project


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SecretError(
            f"secret name {name!r}: start with a letter or '_', then letters, digits, "
            "'_', '.' or '-' (at most 128), e.g. SLACK_TOKEN"
        )
    return name


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"{where}: the master key is not base64") from exc
    if len(key) != 32:
        raise SecretError(f"{where}: the master key is {len(key)} bytes, not 32")
    return key


def load_master_key(config: Path | None = None) -> bytes:
    """`$FLOWFORGE_MASTER_KEY`, else `<config>/master.key` (created 0600 on first use)."""
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return _decode_key(env, f"${MASTER_KEY_ENV}")
    path = (config or config_dir()) / MASTER_KEY_FILE
    if not path.exists():
        _create_key_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return _decode_key(path.read_text(encoding="ascii"), str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(base64.b64encode(AESGCM.generate_key(256)).decode() + "\n")
        # link refuses an existing name: two processes starting at once keep one key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


class SecretBox:
    """AES-256-GCM under the master key, bound to (project, name)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise SecretError("the master key is 32 bytes")
        self._aead = AESGCM(master_key)
        # Names the key without revealing it, so a wrong key is told apart from damage.
        self.key_id = hashlib.sha256(b"flowforge master key id\0" + master_key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id})"

    @staticmethod
    def _aad(project: str, name: str) -> bytes:
        return canonical_json({"name": name, "project": project})

    def encrypt(self, project: str, name: str, value: str) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) of `value`."""
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, value.encode("utf-8"), self._aad(project, name))

    def decrypt(self, project: str, name: str, nonce: bytes, ciphertext: bytes) -> str:
        try:
            plain = self._aead.decrypt(nonce, ciphertext, self._aad(project, name))
        except InvalidTag as exc:
            raise SecretError(f"secret {project}/{name} does not open: it was altered") from exc
        return plain.decode("utf-8")


def _set(conn: Connection, project: str, name: str, sealed: dict[str, Any]) -> bool:
    now = datetime.now(UTC)
    where = (_SECRETS.c.project == project, _SECRETS.c.name == name)
    if conn.execute(update(_SECRETS).where(*where).values(**sealed, updated_at=now)).rowcount:
        return False
    row = {"project": project, "name": name, "created_at": now, "updated_at": now}
    conn.execute(insert(_SECRETS), {**row, **sealed})
    return True


def _rows(conn: Connection, project: str, names: set[str]) -> dict[str, Row[Any]]:
    query = select(_SECRETS).where(_SECRETS.c.project == project, _SECRETS.c.name.in_(names))
    return {row.name: row for row in conn.execute(query)}


def _list(conn: Connection, project: str) -> list[SecretInfo]:
    query = (
        select(_SECRETS.c.project, _SECRETS.c.name, _SECRETS.c.created_at, _SECRETS.c.updated_at)
        .where(_SECRETS.c.project == project)
        .order_by(_SECRETS.c.name)
    )
    return [SecretInfo(*row) for row in conn.execute(query)]


def _remove(conn: Connection, project: str, name: str) -> bool:
    where = (_SECRETS.c.project == project, _SECRETS.c.name == name)
    return bool(conn.execute(delete(_SECRETS).where(*where)).rowcount)


class SecretStore:
    """The project secrets in the control plane's database."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def set(self, project: str, name: str, value: str) -> bool:
        """Store or replace a secret; True when it is new."""
        check_project(project), check_name(name)
        if not value:
            raise SecretError(f"secret {project}/{name}: the value is empty")
        nonce, ciphertext = self.box.encrypt(project, name, value)
        sealed = {"key_id": self.box.key_id, "nonce": nonce, "ciphertext": ciphertext}
        try:
            return await self.db.transaction(_set, project, name, sealed)
        except IntegrityError:
            # Another writer created it between our update and our insert: replace theirs.
            return await self.db.transaction(_set, project, name, sealed)

    async def get(self, project: str, name: str) -> str:
        found = await self.resolve(project, [name])
        return found[name]

    async def resolve(self, project: str, names: list[str] | Mapping[str, str]) -> dict[str, str]:
        """Values of the project's secrets. Given a mapping (what a step calls a secret ->
        the project secret's name) the result is keyed by what the step calls them."""
        wanted = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
        if not wanted:
            return {}
        rows = await self.db.transaction(_rows, project, set(wanted.values()))
        values: dict[str, str] = {}
        for alias, name in wanted.items():
            row = rows.get(name)
            if row is None:
                raise SecretError(f"no secret {name!r} in project {project!r}")
            if row.key_id != self.box.key_id:
                raise SecretError(
                    f"secret {project}/{name} was encrypted under master key {row.key_id}, "
                    f"not the one configured ({self.box.key_id})"
                )
            values[alias] = self.box.decrypt(project, name, row.nonce, row.ciphertext)
        return values

    async def list(self, project: str) -> list[SecretInfo]:
        return await self.db.transaction(_list, check_project(project))

    async def remove(self, project: str, name: str) -> bool:
        """Delete a secret; False when there was none."""
        return await self.db.transaction(_remove, project, name)
