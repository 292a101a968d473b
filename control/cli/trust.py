"""`flowforge trust ...`: the keys this workspace trusts to sign packages, per publisher."""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowforge.runtime.signing import KeyFormatError, is_fingerprint, parse_public_key
from flowforge.runtime.trust import TrustStoreError

from .audit import record_local
from .options import fail, open_trust_store, output_option, workspace_option


@click.group()
def trust() -> None:
    """Manage the workspace trust store (which key may sign for which publisher)."""


def _public_key(text: str) -> bytes:
    """The key from a public key line, or from a .pub file that holds one."""
    candidate = Path(text)
    if len(text) < 4096 and candidate.is_file():
        text = candidate.read_text(encoding="utf-8", errors="replace")
    try:
        return parse_public_key(text)
    except KeyFormatError as exc:
        fail(f"PUBKEY: {exc}")


@trust.command("add")
@click.argument("pubkey")
@click.option("--publisher", required=True, help="The publisher (part before '/') it signs for.")
@click.option("--comment", default="", help="A note kept with the entry.")
@workspace_option
def add(pubkey: str, publisher: str, comment: str, workspace: Path | None) -> None:
    """Trust the key PUBKEY to sign packages of PUBLISHER.

    PUBKEY is the line `flowforge keys export NAME` prints
    (`ed25519 <base64> <fingerprint>`), or a .pub file. Adding it again changes nothing.

    \b
    Example:
      flowforge trust add "$(flowforge keys export release)" --publisher acme
    """
    raw = _public_key(pubkey)
    store = open_trust_store(workspace)
    try:
        entry, added = store.add(raw, publisher, comment)
    except TrustStoreError as exc:
        fail(str(exc))
    if added:  # AUD: trust changes are audited
        details = {"fingerprint": entry.fingerprint, "publisher": entry.publisher}
        record_local(workspace, "trust.add", f"key:{entry.fingerprint}", details)
    verb = "trusted" if added else "already trusted"
    click.echo(f"{verb}: {entry.fingerprint} for publisher {entry.publisher}")


@trust.command("list")
@output_option
@workspace_option
def list_(output: str, workspace: Path | None) -> None:
    """List trusted keys: fingerprint, publisher, added, revoked.

    \b
    Example:
      flowforge trust list --output json
    """
    store = open_trust_store(workspace, as_json=output == "json")
    entries = store.entries()
    if output == "json":
        click.echo(json.dumps([e.to_json() for e in entries]))
        return
    if not entries:
        click.echo(f"no trusted keys in {store.path}")
        return
    width = max(len(e.publisher) for e in entries)
    for e in entries:
        state = f"revoked {e.revoked_at}" if e.revoked else "trusted"
        note = f"  # {e.comment}" if e.comment else ""
        click.echo(f"{e.fingerprint}  {e.publisher:<{width}}  added {e.added_at}  {state}{note}")


@trust.command("revoke")
@click.argument("fingerprint")
@workspace_option
def revoke(fingerprint: str, workspace: Path | None) -> None:
    """Revoke the key FINGERPRINT for every publisher. Permanent.

    Packages it signed stop verifying, including ones that verified before.

    \b
    Example:
      flowforge trust revoke ed25519:3f1c...e9
    """
    if not is_fingerprint(fingerprint):
        fail(f"{fingerprint!r} is not a fingerprint (ed25519:<64 hex digits>)")
    store = open_trust_store(workspace)
    try:
        entries = store.revoke(fingerprint)
    except TrustStoreError as exc:
        fail(str(exc))
    publishers = ", ".join(e.publisher for e in entries)
    details = {"fingerprint": fingerprint, "publishers": [e.publisher for e in entries]}
    record_local(workspace, "trust.revoke", f"key:{fingerprint}", details)  # AUD
    click.echo(f"revoked {fingerprint} (was trusted for {publishers})")
