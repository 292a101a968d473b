"""Every core connector publishes cleanly and gets a score (slow: several minutes, since
publishing compiles each component cold). Runs when FLOWFORGE_SLOW_TESTS=1 (CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.marketplace.core_scores import core_connectors, score_all

pytestmark = pytest.mark.skipif(
    os.environ.get("FLOWFORGE_SLOW_TESTS") != "1", reason="slow; set FLOWFORGE_SLOW_TESTS=1"
)


@pytest.mark.timeout(1800)
async def test_the_twelve_core_connectors_publish_and_score(tmp_path: Path) -> None:
    infos, refused = await score_all(tmp_path)
    assert refused == []
    assert len(infos) == len(core_connectors()) == 12
    for info in infos:
        assert info.gate.installable
        assert 0 < info.score.total <= 100
        assert {f.name for f in info.score.factors} == {
            "conformance", "least_privilege", "semver", "signing_key", "docs", "license",
            "footprint",
        }  # fmt: skip
