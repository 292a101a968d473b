"""`flowforge connector sign`: complete a package with an Ed25519 signature."""

from __future__ import annotations

from pathlib import Path

import click

from flowforge.control.keys import KeyStoreError, get_key, load_private_key
from flowforge.runtime.files import write_atomically
from flowforge.runtime.package import PackageError, read_package, sign_package

from ..options import EXIT_REFUSED, fail, passphrase_option, read_passphrase


@click.command("sign")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--key", "key_name", required=True, help="The signing key (flowforge keys list).")
@passphrase_option
def sign(package: Path, key_name: str, passphrase_stdin: bool) -> None:
    """Sign PACKAGE in place with the key NAME (any earlier signature is replaced).

    An encrypted key's passphrase comes from --passphrase-stdin or
    $FLOWFORGE_KEY_PASSPHRASE.

    \b
    Exit codes: 0 signed; 1 the package is malformed; 2 key problem.

    \b
    Example:
      echo "$PASSPHRASE" | flowforge connector sign dist/echo-1.0.0.ffpkg --key release \\
        --passphrase-stdin
    """
    passphrase = read_passphrase(passphrase_stdin, allow_env=True)
    try:
        info = get_key(key_name)
        private = load_private_key(key_name, passphrase)
    except KeyStoreError as exc:
        fail(str(exc))
    try:
        signed = sign_package(package, private)
        label = read_package(signed).label
    except PackageError as exc:
        fail(str(exc), code=EXIT_REFUSED)
    write_atomically(package, signed)
    click.echo(f"signed {label} in {package} with key {info.name} ({info.fingerprint})")
