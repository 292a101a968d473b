"""`flowforge keys ...`: Ed25519 signing keys for connector packages."""

from __future__ import annotations

import json

import click

from flowforge.control.keys import KeyStoreError, get_key, list_keys, new_key

from .options import fail, output_option, passphrase_option, read_passphrase


@click.group()
def keys() -> None:
    """Create and show the keys that sign connector packages.

    Keys live in $FLOWFORGE_CONFIG_DIR/keys (default ~/.config/flowforge/keys).
    """


@keys.command("new")
@click.argument("name")
@passphrase_option
def new(name: str, passphrase_stdin: bool) -> None:
    """Create the key pair NAME (NAME.key, mode 0600; NAME.pub).

    The private key is encrypted when a passphrase is given. An existing key is never
    overwritten.

    \b
    Example:
      echo "$PASSPHRASE" | flowforge keys new release --passphrase-stdin
    """
    passphrase = read_passphrase(passphrase_stdin, allow_env=False)
    try:
        info = new_key(name, passphrase)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(f"created key {info.name} ({'encrypted' if info.encrypted else 'unencrypted'})")
    click.echo(f"private  {info.path}")
    click.echo(f"public   {info.public_key_line}")
    click.echo(f"Others trust it with: flowforge trust add '{info.public_key_line}' --publisher P")


@keys.command("list")
@output_option
def list_(output: str) -> None:
    """List the signing keys: name, fingerprint, created, encrypted.

    \b
    Example:
      flowforge keys list --output json
    """
    try:
        found = list_keys()
    except KeyStoreError as exc:
        fail(str(exc), as_json=output == "json", kind="keys")
    if output == "json":
        docs = [
            {
                "name": k.name,
                "fingerprint": k.fingerprint,
                "public_key": k.public_key_line,
                "created": k.created.isoformat(timespec="seconds"),
                "encrypted": k.encrypted,
            }
            for k in found
        ]
        click.echo(json.dumps(docs))
        return
    if not found:
        click.echo("no keys; create one with: flowforge keys new NAME")
        return
    width = max(len(k.name) for k in found)
    for k in found:
        created = k.created.strftime("%Y-%m-%d %H:%M")
        encrypted = "encrypted" if k.encrypted else "unencrypted"
        click.echo(f"{k.name:<{width}}  {k.fingerprint}  {created}  {encrypted}")


@keys.command("export")
@click.argument("name")
def export(name: str) -> None:
    """Print the public key line of NAME, which `flowforge trust add` accepts.

    \b
    Example:
      flowforge trust add "$(flowforge keys export release)" --publisher acme
    """
    try:
        info = get_key(name)
    except KeyStoreError as exc:
        fail(str(exc))
    click.echo(info.public_key_line)
