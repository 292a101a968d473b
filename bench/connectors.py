"""What a connector costs, per language: build, size, compile, load and call.

For every connector folder under `connectors/` (the SDKs in `connectors/sdk/` excepted):
  build cold        build_component into an empty build cache (the toolchain runs)
  build warm        the same again (a cache hit: hashing the sources)
  size              the component's bytes
  first compile     Sandbox.load into an empty compile cache (wasmtime compiles it)
  load from cache   mapping the compiled artefact back in (median)
  invoke            instantiate + invoke of its first example through Sandbox.run (median
                    microseconds); examples that need HTTP are skipped, so a connector whose
                    every example needs HTTP has no invoke figure (the table says so)
Each language's line is the median across its connectors.

    python -m bench.connectors [--only NAME] [--quick] [--rounds N] [--output table|json]
                               [--connectors DIR]

--quick measures warm only: it builds through the user's build cache and loads through the
user's compile cache (a first run on a machine still pays for both once), and leaves out the
cold build and first compile figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.runtime import (
    CompileCache,
    ConnectorFailed,
    Grants,
    LoadError,
    Sandbox,
    Success,
)
from flowforge.runtime.engine import get_engine
from flowforge.runtime.manifest import ConnectorManifest, Example, ManifestError, load_manifest

ROOT = Path(__file__).resolve().parent.parent
CONNECTORS = ROOT / "connectors"


@dataclass
class Figures:
    """One connector's measurements; None where not measured (see `note`)."""

    connector: str
    language: str
    build_cold_s: float | None
    build_warm_ms: float
    size_bytes: int
    first_compile_s: float | None
    load_from_cache_ms: float
    invoke_us: float | None
    example: str | None
    note: str = ""


def connector_dirs(root: Path, only: str | None) -> list[Path]:
    found = sorted(p.parent for p in root.glob("*/connector.toml") if p.parent.name != "sdk")
    if only is not None:
        found = [p for p in found if only == p.name or only == load_manifest(p).name]
    return found


def median_us(fn: Callable[[], object], rounds: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def local_example(manifest: ConnectorManifest) -> Example | None:
    """The first example that needs no HTTP exchange (the sandbox alone can run it)."""
    return next((e for e in manifest.examples if not e.http), None)


@contextmanager
def caches(quick: bool) -> Iterator[tuple[Path | None, CompileCache]]:
    """Empty build and compile caches for a cold run, the user's for a quick one."""
    if quick:
        yield None, CompileCache()
        return
    with tempfile.TemporaryDirectory(prefix="flowforge-bench-") as tmp:
        yield Path(tmp) / "builds", CompileCache(Path(tmp) / "compiled")


def measure(folder: Path, quick: bool, rounds: int) -> Figures:
    manifest = load_manifest(folder)
    language = manifest.language
    print(f"{manifest.name} ({language})...", file=sys.stderr)
    with caches(quick) as (build_cache, compile_cache):
        build_cold: float | None = None
        if not quick:
            build_cold = timed(lambda: build_component(folder, language, cache_dir=build_cache))
        else:
            build_component(folder, language)  # a first run on this machine builds here
        warm = median_us(lambda: build_component(folder, language, cache_dir=build_cache), 5, 1)
        built = build_component(folder, language, cache_dir=build_cache)
        data = built.path.read_bytes()

        sandbox = Sandbox(compile_cache)
        try:
            first_compile = timed(lambda: sandbox.load(data, manifest.name))
            loaded = sandbox.load(data, manifest.name)
            engine = get_engine()
            load_ms = median_us(lambda: compile_cache.load(engine, data, loaded.sha256), 20, 2)
            example = local_example(manifest)
            invoke: float | None = None
            note = ""
            if example is None:
                note = "every example needs HTTP: invoke not measured"
            else:
                config, input_ = json.dumps(example.config), json.dumps(example.input)
                grants = Grants(secrets=example.secrets)
                limits = manifest.limits.to_limits()

                def call() -> object:
                    return sandbox.run(
                        loaded, config=config, input=input_, grants=grants, limits=limits
                    )

                outcome = call()
                expected_failure = example.expect.failure
                as_expected = (
                    isinstance(outcome, Success)
                    if expected_failure is None
                    else isinstance(outcome, ConnectorFailed)
                    and outcome.failure.kind == expected_failure
                )
                if not as_expected:
                    note = f"example {example.name!r} did not give its expected result"
                invoke = median_us(call, rounds, warmup=min(20, rounds))
        finally:
            sandbox.close()
    return Figures(
        connector=manifest.name,
        language=language,
        build_cold_s=build_cold,
        build_warm_ms=warm / 1000,
        size_bytes=len(data),
        first_compile_s=None if quick else first_compile,
        load_from_cache_ms=load_ms / 1000,
        invoke_us=invoke,
        example=example.name if example is not None else None,
        note=note,
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class LanguageSummary:
    """The median of each figure across one language's connectors."""

    connectors: list[str]
    build_cold_s: float | None
    build_warm_ms: float | None
    size_bytes: float | None
    first_compile_s: float | None
    load_from_cache_ms: float | None
    invoke_us: float | None
    invoke_measured_on: int


def summary(figures: list[Figures]) -> dict[str, LanguageSummary]:
    by_language: dict[str, list[Figures]] = {}
    for f in figures:
        by_language.setdefault(f.language, []).append(f)
    return {
        language: LanguageSummary(
            connectors=[f.connector for f in group],
            build_cold_s=_median([f.build_cold_s for f in group]),
            build_warm_ms=_median([f.build_warm_ms for f in group]),
            size_bytes=_median([float(f.size_bytes) for f in group]),
            first_compile_s=_median([f.first_compile_s for f in group]),
            load_from_cache_ms=_median([f.load_from_cache_ms for f in group]),
            invoke_us=_median([f.invoke_us for f in group]),
            invoke_measured_on=sum(f.invoke_us is not None for f in group),
        )
        for language, group in sorted(by_language.items())
    }


_COLUMNS = (
    ("connector", 28),
    ("build cold s", 12),
    ("build warm ms", 13),
    ("size", 10),
    ("1st compile s", 13),
    ("load ms", 8),
    ("invoke us", 10),
)


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MiB"


def _row(
    name: str,
    cold: float | None,
    warm: float | None,
    size: float | None,
    compile_s: float | None,
    load: float | None,
    invoke: float | None,
) -> str:
    cells = [name, _cell(cold, 1), _cell(warm, 1), _size(size), _cell(compile_s, 2),
             _cell(load, 2), _cell(invoke, 0)]  # fmt: skip
    return "  ".join(
        f"{cell:>{width}}" if i else f"{cell:<{width}}"
        for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    )


def print_tables(figures: list[Figures], quick: bool) -> None:
    header = "  ".join(
        f"{name:>{width}}" if i else f"{name:<{width}}" for i, (name, width) in enumerate(_COLUMNS)
    )
    for language, median in summary(figures).items():
        print(
            f"\n{language}: median across {len(median.connectors)} connector(s), "
            f"invoke across {median.invoke_measured_on}"
        )
        print(header)
        rows = [f for f in figures if f.language == language]
        for f in rows:
            print(
                _row(f.connector, f.build_cold_s, f.build_warm_ms, f.size_bytes,
                     f.first_compile_s, f.load_from_cache_ms, f.invoke_us)
            )  # fmt: skip
        print(
            _row("median", median.build_cold_s, median.build_warm_ms, median.size_bytes,
                 median.first_compile_s, median.load_from_cache_ms, median.invoke_us)
        )  # fmt: skip
        for f in rows:
            if f.note:
                print(f"  note: {f.connector}: {f.note}")
    if quick:
        print("\n--quick: warm figures only (no cold build, no first compile)")


def _rounded(figures: dict[str, object]) -> dict[str, object]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", metavar="NAME", help="one connector (folder or full name)")
    parser.add_argument("--quick", action="store_true", help="warm figures only")
    parser.add_argument("--rounds", type=int, default=500, help="invocations per median")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument(
        "--connectors", type=Path, default=CONNECTORS, help="the folder of connector folders"
    )
    args = parser.parse_args()
    folders = connector_dirs(args.connectors, args.only)
    if not folders:
        named = f" named {args.only}" if args.only else ""
        sys.exit(f"no connectors{named} found under {args.connectors}")
    figures: list[Figures] = []
    for folder in folders:
        try:
            figures.append(measure(folder, args.quick, args.rounds))
        except (ManifestError, BuildError, ToolchainError, LoadError) as exc:
            # One broken connector should not hide the others' figures.
            print(f"skipped {folder.name}: {exc}", file=sys.stderr)
    if not figures:
        sys.exit("no connector could be measured")
    if args.output == "json":
        languages = {name: _rounded(asdict(m)) for name, m in summary(figures).items()}
        doc = {"quick": args.quick, "languages": languages,
               "connectors": [_rounded(asdict(f)) for f in figures]}  # fmt: skip
        print(json.dumps(doc, indent=2))
        return
    print_tables(figures, args.quick)


if __name__ == "__main__":
    main()
