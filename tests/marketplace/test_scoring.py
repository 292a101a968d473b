"""Score factors computed from a manifest and measurements."""

from __future__ import annotations

from flowforge.marketplace import scoring
from flowforge.runtime.manifest import parse_manifest


def manifest(**changes: object) -> object:
    doc: dict[str, object] = {
        "name": "acme/x", "version": "1.0.0", "description": "d", "language": "zig",
        "license": "MIT",
    }  # fmt: skip
    doc.update(changes)
    return parse_manifest(doc)


def test_weights_sum_to_100() -> None:
    assert sum(scoring.WEIGHTS.values()) == 100


def test_licences() -> None:
    assert scoring.osi_approved("MIT")
    assert scoring.osi_approved("MIT OR LicenseRef-Proprietary")
    assert scoring.osi_approved("(Apache-2.0 AND MIT)")
    assert scoring.osi_approved("GPL-2.0-or-later WITH Classpath-exception-2.0")
    assert not scoring.osi_approved("LicenseRef-Proprietary")
    assert not scoring.osi_approved("MIT AND LicenseRef-Proprietary")


def test_wildcards_and_many_secrets_cost_points() -> None:
    narrow = scoring.least_privilege(manifest(capabilities={"network": ["api.example.com"]}))  # type: ignore[arg-type]
    wild = scoring.least_privilege(manifest(capabilities={"network": ["*.example.com"]}))  # type: ignore[arg-type]
    greedy = scoring.least_privilege(
        manifest(capabilities={"secrets": ["a", "b", "c", "d"]})  # type: ignore[arg-type]
    )
    assert narrow.points == 15 and wild.points == 11 and greedy.points == 11


def test_footprint_prefers_small_and_fast() -> None:
    small = scoring.Measurements([], 40.0, 0.1, 50_000, 60_000)
    big = scoring.Measurements([], 23_000.0, 2.0, 18_000_000, 18_100_000)
    assert scoring.footprint(small).points == 15
    assert 0 < scoring.footprint(big).points < 3
