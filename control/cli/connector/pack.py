"""`flowforge connector pack`: build a connector and write its unsigned package."""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.runtime.files import write_atomically
from flowforge.runtime.manifest import ManifestError, load_manifest
from flowforge.runtime.package import PackageError, pack, package_filename

from ..options import fail, output_option


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.command("pack")
@click.argument(
    "directory", default=".", type=click.Path(path_type=Path, file_okay=False, exists=True)
)
@output_option
def pack_command(directory: Path, output: str) -> None:
    """Build the connector in DIRECTORY (default: here) and write its package to
    DIRECTORY/dist/SHORTNAME-VERSION.ffpkg.

    The package holds the canonical manifest, pinned to the component's sha256, and the
    component. It is unsigned until `flowforge connector sign` completes it.

    \b
    Exit codes: 0 packed; 2 manifest, toolchain or build error.

    \b
    Example:
      flowforge connector pack connectors/http-request
      flowforge connector sign connectors/http-request/dist/http-request-1.0.0.ffpkg --key release
    """
    as_json = output == "json"
    try:
        manifest = load_manifest(directory)
        built = build_component(directory, manifest.language, progress=_progress)
        data = pack(manifest, built.path.read_bytes())
    except ManifestError as exc:
        fail(str(exc), as_json=as_json, kind="manifest")
    except ToolchainError as exc:
        fail(str(exc), as_json=as_json, kind="toolchain")
    except BuildError as exc:
        fail(str(exc), as_json=as_json, kind="build")
    except PackageError as exc:
        fail(str(exc), as_json=as_json, kind="package")
    dist = directory / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / package_filename(manifest)
    write_atomically(target, data)
    if as_json:
        doc = {
            "ok": True,
            "name": manifest.name,
            "version": manifest.version,
            "path": str(target),
            "component_sha256": built.sha256,
            "size_bytes": len(data),
            "signed": False,
        }
        click.echo(json.dumps(doc))
        return
    click.echo(f"packed {manifest.name}@{manifest.version} -> {target} (unsigned)")
    click.echo(f"component sha256 {built.sha256}")
    click.echo(f"next: flowforge connector sign {target} --key NAME")
