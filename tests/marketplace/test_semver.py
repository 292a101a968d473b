"""Versions and ranges as `install` reads them."""

from __future__ import annotations

import pytest

from flowforge.marketplace.semver import Range, Version, VersionError

V = Version.parse


@pytest.mark.parametrize(
    ("spec", "yes", "no"),
    [
        ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0", "1.3.0-rc.1"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        ("~1.2.3", ["1.2.3", "1.2.99"], ["1.3.0", "1.2.2"]),
        ("~1", ["1.0.0", "1.5.0"], ["2.0.0"]),
        (">=1,<2", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.0"]),
        ("1.2.3", ["1.2.3"], ["1.2.4"]),
        ("=2.0.0-rc.1", ["2.0.0-rc.1"], ["2.0.0"]),
        ("1.2", ["1.2.0", "1.2.7"], ["1.3.0"]),
        ("*", ["0.0.1", "9.0.0"], ["1.0.0-alpha"]),
    ],
)
def test_ranges(spec: str, yes: list[str], no: list[str]) -> None:
    wanted = Range.parse(spec)
    assert all(wanted.matches(V(v)) for v in yes), spec
    assert not any(wanted.matches(V(v)) for v in no), spec


def test_ordering_follows_semver_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]  # fmt: skip
    assert sorted(map(V, reversed(ordered))) == list(map(V, ordered))
    assert Range.parse("^1").best([V("1.0.0"), V("1.10.0"), V("2.0.0")]) == V("1.10.0")


def test_breaking_bumps() -> None:
    assert V("2.0.0").is_breaking_bump_from(V("1.9.0"))
    assert not V("1.3.0").is_breaking_bump_from(V("1.2.0"))
    assert V("0.3.0").is_breaking_bump_from(V("0.2.5"))
    assert not V("0.2.6").is_breaking_bump_from(V("0.2.5"))


@pytest.mark.parametrize("bad", ["one", "^x", ">=1,<two", "1.2.3.4"])
def test_malformed_ranges_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(VersionError, match=r"1\.2\.3|semantic version"):
        Range.parse(bad)
