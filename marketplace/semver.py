"""Semantic versions and the version ranges `install` accepts.

Ranges: `*` (any), an exact version (`1.2.3` or `=1.2.3`), caret (`^1.2`: >=1.2.0 <2.0.0;
`^0.2.3`: >=0.2.3 <0.3.0), tilde (`~1.2.3`: >=1.2.3 <1.3.0), and comma-separated
comparators (`>=1,<2`). Partial versions fill with zeros. A pre-release matches only a
range that names it exactly, so `^1` never installs `2.0.0-rc.1` (or `1.5.0-beta`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Final

_VERSION = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_PARTIAL = re.compile(r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*|[x*]))?(?:\.(0|[1-9]\d*|[x*]))?$")
_OPERATORS: Final = (">=", "<=", ">", "<", "=")


class VersionError(ValueError):
    """A version or range that cannot be read; the message shows the accepted forms."""


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if match is None:
            raise VersionError(f"{text!r} is not a semantic version such as 1.2.0 or 2.0.0-rc.1")
        pre = tuple(match.group(4).split(".")) if match.group(4) else ()
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort below alphanumeric.
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, ids)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        pre = f"-{'.'.join(self.prerelease)}" if self.prerelease else ""
        return f"{self.major}.{self.minor}.{self.patch}{pre}"

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def is_breaking_bump_from(self, previous: Version) -> bool:
        """Whether going from `previous` to this version may break callers: a new major,
        or (below 1.0.0, as Cargo reads semver) a new minor of 0.x."""
        if self.major != previous.major:
            return self.major > previous.major
        if self.major == 0:
            return self.minor > previous.minor
        return False


@dataclass(frozen=True, slots=True)
class _Comparator:
    op: str
    version: Version

    def matches(self, v: Version) -> bool:
        if self.op == ">=":
            return v >= self.version
        if self.op == ">":
            return v > self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == "<":
            return v < self.version
        return v == self.version


def _partial(text: str, whole: str) -> tuple[int, int | None, int | None]:
    match = _PARTIAL.match(text.strip())
    if match is None:
        raise VersionError(
            f"range {whole!r}: {text!r} is not a version; use forms like 1.2.3, ^1.2, ~1.2.3, "
            "'>=1,<2' or *"
        )
    major = int(match.group(1))
    minor = match.group(2)
    patch = match.group(3)
    m = None if minor in (None, "x", "*") else int(minor)
    p = None if m is None or patch in (None, "x", "*") else int(patch)
    return major, m, p


@dataclass(frozen=True, slots=True)
class Range:
    """A set of versions; `text` is what the user wrote."""

    text: str
    comparators: tuple[_Comparator, ...]
    exact_prerelease: Version | None = None

    @classmethod
    def parse(cls, text: str) -> Range:
        spec = text.strip()
        if spec in ("", "*", "x", "latest"):
            return cls(text, ())
        try:
            exact = Version.parse(spec.removeprefix("="))
        except VersionError:
            pass
        else:
            return cls(text, (_Comparator("=", exact),), exact if exact.prerelease else None)
        if spec[0] in "^~":
            return cls(text, _shorthand(spec[0], spec[1:], text))
        comparators: list[_Comparator] = []
        for part in spec.split(","):
            item = part.strip()
            op = next((o for o in _OPERATORS if item.startswith(o)), None)
            if op is None:
                comparators.extend(_bare(item, text))
                continue
            major, minor, patch = _partial(item[len(op) :], text)
            comparators.append(_Comparator(op, Version(major, minor or 0, patch or 0)))
        return cls(text, tuple(comparators))

    def matches(self, version: Version) -> bool:
        if version.prerelease and version != self.exact_prerelease:
            return False
        return all(c.matches(version) for c in self.comparators)

    @property
    def is_exact(self) -> bool:
        """One exact version (`1.2.3` or `=1.2.3`), as a lock file pins."""
        return len(self.comparators) == 1 and self.comparators[0].op == "="

    def best(self, versions: list[Version]) -> Version | None:
        """The highest version in the range, or None."""
        return max((v for v in versions if self.matches(v)), default=None)

    def __str__(self) -> str:
        return self.text


def _bare(item: str, whole: str) -> list[_Comparator]:
    """`1` or `1.2` alone: every version with that prefix."""
    major, minor, _ = _partial(item, whole)
    if minor is None:
        return [_Comparator(">=", Version(major, 0, 0)), _Comparator("<", Version(major + 1, 0, 0))]
    return [
        _Comparator(">=", Version(major, minor, 0)),
        _Comparator("<", Version(major, minor + 1, 0)),
    ]


def _shorthand(kind: str, rest: str, whole: str) -> tuple[_Comparator, ...]:
    major, minor, patch = _partial(rest, whole)
    low = Version(major, minor or 0, patch or 0)
    if kind == "~":
        high = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
    elif major > 0 or minor is None:
        high = Version(major + 1, 0, 0)
    elif minor > 0 or patch is None:
        high = Version(0, minor + 1, 0)
    else:
        high = Version(0, 0, (patch or 0) + 1)
    return (_Comparator(">=", low), _Comparator("<", high))


__all__ = ["Range", "Version", "VersionError"]
