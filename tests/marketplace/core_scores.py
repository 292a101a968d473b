"""Build, pack, sign (with a throwaway test key) and publish the twelve core connectors
into a scratch registry, and print their scores with the breakdown.

    .venv/bin/python -m tests.marketplace.core_scores [--json OUT]

Slow (the Python and JavaScript connectors take 20-30 s each to compile, and publishing
compiles cold on purpose: the cold start is one of the measurements).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.build import build_component
from flowforge.marketplace.errors import PublishRefused
from flowforge.marketplace.records import VersionInfo
from flowforge.marketplace.service import Registry
from flowforge.runtime.manifest import load_manifest
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key

CONNECTORS = Path(__file__).parents[2] / "connectors"


def core_connectors() -> list[Path]:
    return sorted(
        d
        for d in CONNECTORS.iterdir()
        if d.is_dir() and d.name != "sdk" and (d / "connector.toml").is_file()
    )


async def score_all(folder: Path) -> tuple[list[VersionInfo], list[str]]:
    key = Ed25519PrivateKey.generate()
    scored: list[VersionInfo] = []
    refused: list[str] = []
    registry = await Registry.open(f"sqlite+aiosqlite:///{folder / 'r.db'}", folder / "blobs")
    try:
        for source in core_connectors():
            manifest = load_manifest(source)
            built = build_component(source, manifest.language)
            package = sign_package(pack(manifest, built.path.read_bytes()), key)
            print(f"publishing {manifest.name}@{manifest.version}...", file=sys.stderr, flush=True)
            try:
                result = await registry.publish(package, raw_public_key(key))
            except PublishRefused as exc:
                refused.append(f"{manifest.name}: {exc}")
                continue
            scored.append(result.info)
    finally:
        await registry.close()
    return scored, refused


def table(infos: list[VersionInfo]) -> str:
    names = [f.name for f in infos[0].score.factors] if infos else []
    head = "| connector | lang | score | " + " | ".join(names) + " |"
    rule = "|" + "---|" * (3 + len(names))
    rows = [
        f"| {i.name}@{i.version} | {i.language} | **{i.score.total}** | "
        + " | ".join(f"{f.points:.1f}/{f.weight}" for f in i.score.factors)
        + " |"
        for i in sorted(infos, key=lambda i: -i.score.total)
    ]
    return "\n".join([head, rule, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=None, help="Also write the breakdowns here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        infos, refused = asyncio.run(score_all(Path(scratch)))
    print(table(infos))
    for info in infos:
        print(f"\n{info.name}: {info.score.total}")
        for f in info.score.factors:
            print(f"  {f.name:<16}{f.points:5.1f}/{f.weight:<3} {f.reason}")
    for line in refused:
        print(f"\nREFUSED {line}")
    if args.json:
        args.json.write_text(json.dumps([i.to_json() for i in infos], indent=2))


if __name__ == "__main__":
    main()
