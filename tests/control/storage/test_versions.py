"""Workflow versions are immutable and addressed by the hash of their canonical bytes."""

from __future__ import annotations

import hashlib

import pytest

from flowforge.control.storage import Storage, UnknownVersion, VersionMismatch


def _canonical(n: int) -> tuple[bytes, str]:
    data = f'{{"name":"flow","n":{n}}}'.encode()
    return data, hashlib.sha256(data).hexdigest()


async def test_same_content_is_the_same_version(storage: Storage) -> None:
    data, version = _canonical(1)
    first, created = await storage.versions.put("flow", version, data)
    again, created_again = await storage.versions.put("flow", version, data)
    assert created and not created_again
    assert again == first
    assert (await storage.versions.get(version)).canonical == data


async def test_history_and_latest(storage: Storage) -> None:
    versions = []
    for n in range(3):
        data, version = _canonical(n)
        await storage.versions.put("flow", version, data)
        versions.append(version)
    other, other_version = b'{"name":"other"}', hashlib.sha256(b'{"name":"other"}').hexdigest()
    await storage.versions.put("other", other_version, other)
    assert [v.version for v in await storage.versions.history("flow")] == versions
    latest = await storage.versions.latest("flow")
    assert latest is not None and latest.version == versions[-1]
    assert await storage.versions.latest("missing") is None
    assert await storage.versions.names() == ["flow", "other"]


async def test_a_version_must_be_the_hash_of_its_bytes(storage: Storage) -> None:
    data, _ = _canonical(1)
    with pytest.raises(VersionMismatch, match="not the sha256 of its canonical form"):
        await storage.versions.put("flow", "0" * 64, data)
    with pytest.raises(UnknownVersion, match="no workflow version"):
        await storage.versions.get("0" * 64)
