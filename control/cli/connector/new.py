"""`flowforge connector new`: a connector folder made from its language's template.

The template (`connectors/sdk/<language>/template/`, shipped as `flowforge.sdk`) holds a
connector that builds and passes its own examples as it stands; this command copies it and
fills in `{{name}}`, `{{short_name}}` and `{{description}}`, in file contents and file names.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import click

from flowforge.sdk import template_dir

LANGUAGES: Final = ("python", "javascript", "zig", "c")
DEFAULT_PUBLISHER: Final = "local"
EXIT_USAGE: Final = 2

# The same form as the manifest's `name` (runtime/manifest.py), one part at a time.
_PART = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PART_RULE = "1-63 lowercase letters, digits and '-', starting with a letter or digit"
# Template debris that is never part of a connector.
_SKIPPED_DIRS = frozenset(
    {"__pycache__", ".zig-cache", "zig-cache", "zig-out", "dist", "node_modules"}
)
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".wasm")


class ScaffoldError(Exception):
    """The connector cannot be created; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Scaffold:
    """A connector folder just created from a template."""

    name: str
    short_name: str
    directory: Path
    files: tuple[Path, ...]  # relative to `directory`, sorted


def connector_name(name: str, publisher: str | None = None) -> str:
    """`publisher/name` from NAME (`x` or `publisher/x`) and `--publisher`."""
    given_publisher, slash, short = name.rpartition("/")
    if not slash:
        short, given_publisher = name, ""
    if given_publisher and publisher and given_publisher != publisher:
        raise ScaffoldError(
            f"NAME {name!r} names publisher {given_publisher!r} but --publisher is "
            f"{publisher!r}; give one of them"
        )
    chosen = given_publisher or publisher or DEFAULT_PUBLISHER
    if not _PART.match(short):
        raise ScaffoldError(f"invalid connector name {short!r}: use {_PART_RULE}, e.g. hello")
    if not _PART.match(chosen):
        raise ScaffoldError(f"invalid publisher {chosen!r}: use {_PART_RULE}, e.g. acme")
    return f"{chosen}/{short}"


def check_description(description: str) -> str:
    """The description as it goes into connector.toml and source strings, or an error.

    It is pasted into string literals of TOML and the template's language, so the
    characters that would end or escape such a literal are refused rather than guessed at.
    """
    if not description.strip():
        raise ScaffoldError("--description is empty; say in a few words what it does")
    if len(description) > 500:
        raise ScaffoldError(f"--description is {len(description)} characters; keep it to 500")
    bad = sorted({c for c in description if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ScaffoldError(f"--description may not contain {shown}; write it on one line")
    return description


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _template_files(template: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(template):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for filename in filenames:
            if not filename.endswith(_SKIPPED_SUFFIXES):
                found.append((Path(dirpath) / filename).relative_to(template))
    return sorted(found, key=lambda p: p.as_posix())


def _copy_filled(source: Path, target: Path, values: Mapping[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        target.write_bytes(data)  # binary (an icon, say): copied as it is
    else:
        # newline="" keeps the template's own line endings.
        with target.open("w", encoding="utf-8", newline="") as out:
            out.write(_fill(text, values))
    shutil.copymode(source, target)


def create_connector(
    template: Path, parent: Path, name: str, description: str | None = None
) -> Scaffold:
    """Copy `template` to `parent/<short-name>/`, filling in the placeholders.

    `name` is `publisher/short-name` (see `connector_name`). The folder appears whole or
    not at all: the files are written beside it and renamed into place.
    """
    publisher, _, short_name = name.partition("/")
    if not (_PART.match(publisher) and _PART.match(short_name)):
        raise ScaffoldError(f"invalid connector name {name!r}: expected publisher/name")
    values = {
        "name": name,
        "short_name": short_name,
        "description": check_description(description or f"The {short_name} connector"),
    }
    target = parent / short_name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(
            f"{target} already exists and is not empty; choose another NAME or --dir"
        )
    if not template.is_dir():
        raise ScaffoldError(f"no template at {template}: this installation lacks it")
    files = _template_files(template)
    if not files:
        raise ScaffoldError(f"the template at {template} is empty")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{short_name}.new-"))
    try:
        written = []
        for rel in files:
            out = Path(_fill(rel.as_posix(), values))
            _copy_filled(template / rel, staging / out, values)
            written.append(out)
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a project folder is not
        # Replaces an empty folder of that name; fails if something appeared there meanwhile.
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from None
    return Scaffold(name, short_name, target, tuple(sorted(written, key=lambda p: p.as_posix())))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _shown(path: Path) -> str:
    """`path` as the user would type it: relative to the working folder when inside it."""
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return shlex.quote(str(path))
    return shlex.quote(rel.as_posix())


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.command("new")
@click.argument("name")
@click.option(
    "--lang",
    "language",
    type=click.Choice(LANGUAGES),
    required=True,
    help="The language the connector is written in.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="The folder to create the connector's folder in.",
)
@click.option(
    "--publisher",
    default=None,
    help=f"The publisher part of the name (default: {DEFAULT_PUBLISHER}, or the one in NAME).",
)
@click.option("--description", default=None, help="One line saying what the connector does.")
def new(
    name: str, language: str, parent: Path, publisher: str | None, description: str | None
) -> None:
    """Create a connector folder, NAME or PUBLISHER/NAME, from the language's template.

    The folder builds and passes its own examples as generated.

    \b
    Example:
      flowforge connector new hello --lang python --publisher acme
      flowforge connector build hello
      flowforge connector test hello
    """
    try:
        full_name = connector_name(name, publisher)
        made = create_connector(template_dir(language), parent, full_name, description)
    except ScaffoldError as exc:
        _fail(str(exc))
    where = _shown(made.directory)
    click.echo(f"Created {made.name} ({language}) in {where}/:")
    for rel in made.files:
        click.echo(f"  {rel.as_posix()}")
    click.echo("Next:")
    click.echo(f"  flowforge connector build {where}")
    click.echo(f"  flowforge connector test {where}")
