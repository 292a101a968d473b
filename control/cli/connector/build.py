"""`flowforge connector build`: the connector's component and its sha256 under `DIR/dist/`.

The build itself (toolchain, world check, cache by source hash) is
`flowforge.control.build.build_component`; this command reads the manifest for the
language and the name, and publishes the result where the author expects it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.runtime.files import atomic_writer, write_atomically
from flowforge.runtime.manifest import ManifestError, load_manifest

DIST: Final = "dist"
EXIT_USAGE: Final = 2


@dataclass(frozen=True, slots=True)
class Published:
    """A built component as copied into the connector's `dist/` folder."""

    name: str
    version: str
    language: str
    path: Path
    sha256: str
    size_bytes: int
    cached: bool
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "name": self.name,
            "version": self.version,
            "language": self.language,
            "path": os.path.abspath(self.path),  # absolute: JSON readers have no cwd
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
        }


def publish(built: Path, sha256: str, dist: Path, file_name: str) -> Path:
    """Copy `built` to `dist/<file_name>` and write `dist/<file_name>.sha256`
    (`<hex>  <file>`, the form `sha256sum -c` reads)."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / file_name
    with built.open("rb") as src, atomic_writer(target) as out:
        shutil.copyfileobj(src, out)
    line = f"{sha256}  {file_name}\n".encode()
    write_atomically(dist / f"{file_name}.sha256", line)
    return target


def build_connector(directory: Path, progress: Callable[[str], None] | None = None) -> Published:
    """Build the connector in `directory` and publish it under `directory/dist/`.

    Raises ManifestError, ToolchainError or BuildError.
    """
    manifest = load_manifest(directory)
    short_name = manifest.name.split("/", 1)[1]
    started = time.monotonic()
    built = build_component(directory, manifest.language, progress=progress)
    path = publish(built.path, built.sha256, directory / DIST, f"{short_name}.wasm")
    return Published(
        name=manifest.name,
        version=manifest.version,
        language=manifest.language,
        path=path,
        sha256=built.sha256,
        size_bytes=path.stat().st_size,
        cached=built.cached,
        seconds=time.monotonic() - started,
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _fail(kind: str, message: str, as_json: bool) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"ok": False, "error": {"kind": kind, "message": message}}))
    sys.exit(EXIT_USAGE)


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.command("build")
@click.argument(
    "directory",
    default=".",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
)
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="How to print the result (progress goes to stderr either way).",
)
def build(directory: Path, output: str) -> None:
    """Build the connector in DIRECTORY (default: here) into DIRECTORY/dist/NAME.wasm.

    Runs the toolchain of the manifest's language, checks the component against the
    flowforge:connector world, and writes it with its sha256 (NAME.wasm.sha256).
    Unchanged sources are a cache hit and take a moment.

    \b
    Exit codes: 0 built; 2 manifest, toolchain or build error.

    \b
    Example:
      flowforge connector build connectors/http-request --output json
    """
    as_json = output == "json"
    try:
        result = build_connector(directory, progress=_progress)
    except ManifestError as exc:
        _fail("manifest", str(exc), as_json)
    except ToolchainError as exc:
        _fail("toolchain", str(exc), as_json)
    except BuildError as exc:
        _fail("build", str(exc), as_json)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    rows = [
        ("connector", f"{result.name} {result.version} ({result.language})"),
        ("path", _shown(result.path)),
        ("sha256", result.sha256),
        ("size", f"{_size(result.size_bytes)} ({result.size_bytes} bytes)"),
        ("cached", "yes" if result.cached else "no"),
        ("time", f"{result.seconds:.2f} s"),
    ]
    for label, value in rows:
        click.echo(f"{label:<10} {value}")
