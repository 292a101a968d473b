"""`flowforge connector verify`: would the runtime load this package here?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowforge.runtime.package import PackageError, PackageRefused, verify_package
from flowforge.runtime.trust import TrustStoreError

from ..options import EXIT_REFUSED, fail, open_trust_store, output_option, workspace_option


@click.command("verify")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False))
@workspace_option
@output_option
def verify(package: Path, workspace: Path | None, output: str) -> None:
    """Check PACKAGE against the workspace trust store, as the runtime does before loading:
    well formed, signed by a key trusted for its publisher and not revoked, and the
    component matching the manifest's sha256.

    \b
    Exit codes: 0 verified; 1 refused (the message says why).

    \b
    Example:
      flowforge connector verify dist/echo-1.0.0.ffpkg --output json
    """
    as_json = output == "json"
    store = open_trust_store(workspace, as_json)
    try:
        verified = verify_package(package, store)
    except PackageRefused as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind="refused")
    except PackageError as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind="invalid-package")
    except TrustStoreError as exc:
        fail(str(exc), as_json=as_json, kind="trust-store")
    rows = {
        "name": verified.manifest.name,
        "version": verified.manifest.version,
        "publisher": verified.publisher,
        "fingerprint": verified.fingerprint,
        "component_sha256": verified.component_sha256,
        "package_sha256": verified.package_sha256,
    }
    if as_json:
        click.echo(json.dumps({"ok": True, **rows}))
        return
    click.echo(f"verified {verified.label}")
    for label, value in rows.items():
        click.echo(f"{label:<17} {value}")
