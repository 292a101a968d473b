"""Sealed boxes: values sealed to a pool's public key open only with its private key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from flowforge.runtime import sealing
from flowforge.runtime.sealing import SealError, pool_keypair, pool_public_key, seal


def test_seal_and_open_round_trip(tmp_path: Path) -> None:
    pair = pool_keypair(tmp_path, "default")
    values = {"token": "xoxb-123", "pass": "pä$$\n"}
    box = seal(values, pair.public)
    assert box.startswith("ffseal1.")
    assert "xoxb-123" not in box
    assert sealing.open(box, pair.private) == values
    assert seal(values, pair.public) != box  # a fresh ephemeral key and nonce each time
    assert sealing.open(seal({}, pair.public), pair.private) == {}


def test_another_pool_cannot_open_it_and_tampering_is_caught(tmp_path: Path) -> None:
    mine, theirs = pool_keypair(tmp_path, "a"), pool_keypair(tmp_path, "b")
    box = seal({"k": "v"}, mine.public)
    with pytest.raises(SealError, match="another pool key, or altered"):
        sealing.open(box, theirs.private)
    body = bytearray(box.encode())
    body[-5] = ord("A") if body[-5] != ord("A") else ord("B")
    with pytest.raises(SealError):
        sealing.open(body.decode(), mine.private)
    with pytest.raises(SealError, match="not a sealed box"):
        sealing.open("plain", mine.private)
    with pytest.raises(SealError, match="too short"):
        sealing.open("ffseal1.AAAA", mine.private)


def test_pool_keypair_is_created_once_0600(tmp_path: Path) -> None:
    folder = tmp_path / "pools"
    pair = pool_keypair(folder, "gpu")
    assert stat.S_IMODE((folder / "gpu.key").stat().st_mode) == 0o600
    assert pool_keypair(folder, "gpu") == pair
    assert pool_public_key(folder, "gpu") == pair.public
    assert sorted(p.name for p in folder.iterdir()) == ["gpu.key", "gpu.pub"]
    assert base64.b64encode(pair.private).decode() not in repr(pair)
    os.chmod(folder / "gpu.key", 0o640)
    with pytest.raises(SealError, match="readable by others"):
        pool_keypair(folder, "gpu")
    with pytest.raises(SealError, match="pool name"):
        pool_keypair(folder, "../x")
    with pytest.raises(SealError, match="no readable pool public key"):
        pool_public_key(folder, "none")
