"""`flowforge marketplace ...`: publish, browse, install and mirror connectors.

Every command works on a registry: `--registry DB_URL` or $FLOWFORGE_REGISTRY (a
`sqlite+aiosqlite:///PATH` or `postgresql+asyncpg://...` URL), else the workspace's own
SQLite registry in `<workspace>/registry/`; package blobs live in `--blobs DIR`
($FLOWFORGE_REGISTRY_BLOBS), else `<workspace>/registry/blobs`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from flowforge.control.keys import KeyStoreError, list_keys, load_private_key
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.authorization import approval_authorization, yank_authorization
from flowforge.marketplace.db import REGISTRY_ENV, DatabaseError, default_url
from flowforge.marketplace.errors import (
    BundleError,
    InvalidRequest,
    NotFound,
    PublishRefused,
    RegistryError,
    Unauthorized,
)
from flowforge.marketplace.install import InstallRefused, install, uninstall
from flowforge.marketplace.lockfile import LockFileError
from flowforge.marketplace.records import VersionInfo
from flowforge.marketplace.service import Capability, Registry
from flowforge.runtime.package import PackageError, read_package
from flowforge.runtime.signing import KeyFormatError, parse_public_key

from .options import (
    EXIT_REFUSED,
    fail,
    open_trust_store,
    output_option,
    passphrase_option,
    read_passphrase,
    workspace_option,
)

BLOBS_ENV = "FLOWFORGE_REGISTRY_BLOBS"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def registry_options(func: F) -> F:
    func = click.option(
        "--blobs",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=f"Blob folder. Default: ${BLOBS_ENV}, else <workspace>/registry/blobs.",
    )(func)
    func = click.option(
        "--registry",
        "registry_url",
        default=None,
        help=f"Registry database URL. Default: ${REGISTRY_ENV}, "
        "else sqlite+aiosqlite:///<workspace>/registry/registry.db.",
    )(func)
    return workspace_option(output_option(func))


def _say(message: str) -> None:
    click.echo(message, err=True)


def _run(
    workspace: Path | None,
    url: str | None,
    blobs: Path | None,
    as_json: bool,
    operation: Callable[[Registry], Awaitable[T]],
) -> T:
    """Open the registry, run `operation`, close; typed errors become clear exits."""
    root = workspace_dir(workspace) / "registry"
    url = url or os.environ.get(REGISTRY_ENV) or default_url(root)
    blob_dir = blobs or Path(os.environ.get(BLOBS_ENV) or root / "blobs")

    async def go() -> T:
        registry = await Registry.open(url, blob_dir)
        try:
            return await operation(registry)
        finally:
            await registry.close()

    try:
        return asyncio.run(go())
    except PublishRefused as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=f"refused-{exc.check}")
    except (NotFound, Unauthorized, InstallRefused, BundleError) as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=type(exc).__name__)
    except (InvalidRequest, DatabaseError, LockFileError, RegistryError) as exc:
        fail(str(exc), as_json=as_json, kind=type(exc).__name__)
    except OSError as exc:
        fail(f"registry {url}: {exc}", as_json=as_json, kind="io")


def _emit(as_json: bool, doc: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in lines:
            click.echo(line)


def _split(ref: str, default: str | None) -> tuple[str, str | None]:
    name, sep, version = ref.partition("@")
    return name, (version if sep else default)


def _breakdown(info: VersionInfo) -> list[str]:
    lines = [f"score {info.score.total}/100"]
    lines += [f"  {f.name:<16}{f.points:5.1f}/{f.weight:<3} {f.reason}" for f in info.score.factors]
    gate = "installable" if info.gate.installable else "NOT installable"
    return [*lines, f"gate: {gate}: {info.gate.reason}"]


@click.group()
def marketplace() -> None:
    """Publish connectors to a registry, find, inspect and install them.

    \b
    Example:
      flowforge marketplace publish dist/encode-1.0.0.ffpkg
      flowforge marketplace install acme/encode@^1
    """


@marketplace.command("publish")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--public-key",
    default=None,
    help="The signer's public key line (or .pub file), needed the first time the registry "
    "sees the key. Default: found among your keys (flowforge keys list) by fingerprint.",
)
@registry_options
def publish(
    package: Path,
    public_key: str | None,
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Run the publishing checks on PACKAGE and store it in the registry.

    Checks, in order: signature and namespace ownership, version is new, world, the
    manifest examples pass in the sandbox, semver hygiene. The score is measured here.

    \b
    Exit codes: 0 published (or already there, same bytes); 1 refused; 2 usage.

    \b
    Example:
      flowforge marketplace publish connectors/encode/dist/encode-0.1.0.ffpkg
    """
    as_json = output == "json"
    data = package.read_bytes()
    raw = _public_key(data, public_key, as_json)
    _say(f"checking {package} (signature, namespace, version, world, examples, semver)...")
    result = _run(workspace, registry_url, blobs, as_json, lambda r: r.publish(data, raw))
    verb = "published" if result.created else "already published (same bytes)"
    _emit(
        as_json,
        {"ok": True, **result.to_json()},
        [
            f"{verb}: {result.name}@{result.version} sha256 {result.package_sha256}",
            *_breakdown(result.info),
        ],
    )


def _public_key(data: bytes, given: str | None, as_json: bool) -> bytes | None:
    if given is not None:
        text = given
        path = Path(given)
        if len(given) < 4096 and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return parse_public_key(text)
        except KeyFormatError as exc:
            fail(f"--public-key: {exc}", as_json=as_json)
    try:
        signature = read_package(data).signature
    except PackageError as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind="refused-package")
    if signature is None:
        return None
    try:
        mine = [k for k in list_keys() if k.fingerprint == signature.key]
    except KeyStoreError:
        return None
    return mine[0].public_key if mine else None


@marketplace.command("search")
@click.argument("query", default="")
@click.option("--language", default=None, help="Only connectors in this language.")
@click.option("--min-score", type=click.IntRange(0, 100), default=0, help="Lowest score shown.")
@click.option(
    "--capability",
    type=click.Choice(["network", "secrets", "none"]),
    default=None,
    help="Only connectors that declare this capability (none: neither).",
)
@registry_options
def search(
    query: str,
    language: str | None,
    min_score: int,
    capability: str | None,
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Find connectors whose name or description holds every word of QUERY.

    \b
    Example:
      flowforge marketplace search base64 --language zig --min-score 70
    """
    as_json = output == "json"
    hits = _run(
        workspace,
        registry_url,
        blobs,
        as_json,
        lambda r: r.search(query, language, min_score, cast(Capability | None, capability)),
    )
    lines = [
        f"{h.name}@{h.version}  score {h.score:>3}  {h.language:<10} "
        f"{'net ' if h.network else ''}{'secrets ' if h.secrets else ''}- {h.description}"
        for h in hits
    ] or ["no matching connectors"]
    _emit(as_json, [h.to_json() for h in hits], lines)


@marketplace.command("info")
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_options
def info(
    ref: str, output: str, workspace: Path | None, registry_url: str | None, blobs: Path | None
) -> None:
    """Show a connector's versions, score breakdown, capabilities and publisher key.

    \b
    Example:
      flowforge marketplace info flowforge/encode@0.1.0
    """
    as_json = output == "json"
    name, version = _split(ref, None)
    package = _run(workspace, registry_url, blobs, as_json, lambda r: r.info(name, version))
    v = package.selected
    lines = [
        f"{package.name}@{v.version}{'  (yanked)' if v.yanked else ''}: {v.description}",
        f"language {v.language}, licence {v.license}, world {v.world}",
        f"network: {', '.join(v.network) or 'none'}; secrets: {', '.join(v.secrets) or 'none'}",
        f"signed by {v.signer}; namespace {package.namespace} held by {package.owner}",
        f"sha256 {v.package_sha256}, {v.package_bytes} bytes, {v.downloads} download(s)",
        *_breakdown(v),
        "versions: "
        + ", ".join(f"{x.version}{' (yanked)' if x.yanked else ''}" for x in package.versions),
    ]
    _emit(as_json, package.to_json(), lines)


@marketplace.command("install")
@click.argument("ref", metavar="NAME[@RANGE]")
@click.option("--update", is_flag=True, help="Move the lock file's entry to the newest match.")
@registry_options
def install_command(
    ref: str,
    update: bool,
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Install a connector: resolve RANGE (^1.2, ~1.2.3, '>=1,<2', 1.2.3, *), download,
    verify against the trust store, precompile, record it in flowforge.lock.

    \b
    Exit codes: 0 installed; 1 refused (untrusted, digest differs from the lock, ...).

    \b
    Example:
      flowforge marketplace install flowforge/encode@^0.1
    """
    as_json = output == "json"
    name, spec = _split(ref, "*")
    root = workspace_dir(workspace)
    trust = open_trust_store(workspace, as_json)
    done = _run(
        workspace,
        registry_url,
        blobs,
        as_json,
        lambda r: install(r, root, trust, name, spec or "*", update=update, progress=_say),
    )
    moved = f" (was {done.previous.version})" if done.previous else ""
    _emit(
        as_json,
        {"ok": True, "name": done.name, "version": done.version,
         "package_sha256": done.package_sha256, "path": str(done.path)},
        [f"installed {done.name}@{done.version}{moved} -> {done.path}"],
    )  # fmt: skip


@marketplace.command("uninstall")
@click.argument("name")
@output_option
@workspace_option
def uninstall_command(name: str, output: str, workspace: Path | None) -> None:
    """Remove NAME from the lock file (and its package file when unused).

    \b
    Example:
      flowforge marketplace uninstall flowforge/encode
    """
    as_json = output == "json"
    try:
        entry = uninstall(workspace_dir(workspace), name)
    except (InstallRefused, LockFileError) as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=type(exc).__name__)
    _emit(as_json, {"ok": True, "name": name, "version": entry.version},
          [f"uninstalled {name}@{entry.version}"])  # fmt: skip


def _private_key(key_name: str, passphrase_stdin: bool, as_json: bool) -> Any:
    try:
        return load_private_key(key_name, read_passphrase(passphrase_stdin, allow_env=True))
    except KeyStoreError as exc:
        fail(str(exc), as_json=as_json)


@marketplace.command("yank")
@click.argument("ref", metavar="NAME@VERSION")
@click.option("--key", "key_name", required=True, help="A key of the namespace (owner/approved).")
@passphrase_option
@registry_options
def yank(
    ref: str,
    key_name: str,
    passphrase_stdin: bool,
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Yank a version: install skips it; lock files that pin it keep working.

    \b
    Example:
      flowforge marketplace yank flowforge/encode@0.1.0 --key release
    """
    as_json = output == "json"
    name, version = _split(ref, None)
    if not version:
        fail("give the version to yank as NAME@VERSION", as_json=as_json)
    auth = yank_authorization(_private_key(key_name, passphrase_stdin, as_json), name, version)
    done = _run(workspace, registry_url, blobs, as_json, lambda r: r.yank(name, version, auth))
    _emit(as_json, {"ok": True, **done.to_json()}, [f"yanked {name}@{version}"])


@marketplace.command("approve")
@click.argument("namespace")
@click.argument("fingerprint")
@click.option("--key", "key_name", required=True, help="The namespace owner's key.")
@passphrase_option
@registry_options
def approve(
    namespace: str,
    fingerprint: str,
    key_name: str,
    passphrase_stdin: bool,
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Let the key FINGERPRINT publish in NAMESPACE (signed by the owner's key).

    \b
    Example:
      flowforge marketplace approve acme ed25519:3f5a... --key release
    """
    as_json = output == "json"
    private = _private_key(key_name, passphrase_stdin, as_json)
    auth = approval_authorization(private, namespace, fingerprint)
    _run(
        workspace,
        registry_url,
        blobs,
        as_json,
        lambda r: r.approve_key(namespace, fingerprint, auth),
    )
    _emit(as_json, {"ok": True, "namespace": namespace, "fingerprint": fingerprint},
          [f"approved {fingerprint} to publish in {namespace}"])  # fmt: skip


@marketplace.command("export")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("names", nargs=-1)
@registry_options
def export(
    bundle: Path,
    names: tuple[str, ...],
    output: str,
    workspace: Path | None,
    registry_url: str | None,
    blobs: Path | None,
) -> None:
    """Write every version of NAMES (default: all packages) to the bundle file BUNDLE.

    \b
    Example:
      flowforge marketplace export site.ffbundle flowforge/encode flowforge/csv
    """
    as_json = output == "json"
    _say(f"exporting to {bundle}...")
    done = _run(workspace, registry_url, blobs, as_json, lambda r: r.export_bundle(bundle, names))
    _emit(
        as_json,
        {"ok": True, "bundle": str(bundle), "packages": [f"{v.name}@{v.version}" for v in done]},
        [f"exported {len(done)} package version(s) to {bundle}"],
    )


@marketplace.command("import")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@registry_options
def import_(
    bundle: Path, output: str, workspace: Path | None, registry_url: str | None, blobs: Path | None
) -> None:
    """Import a bundle: every package must verify against the workspace trust store, then
    each goes through the publishing checks.

    \b
    Example:
      flowforge marketplace import site.ffbundle
    """
    as_json = output == "json"
    trust = open_trust_store(workspace, as_json)
    _say(f"verifying and importing {bundle}...")
    results = _run(
        workspace, registry_url, blobs, as_json, lambda r: r.import_bundle(bundle, trust)
    )
    lines = [
        f"{r.outcome:<9} {r.name}@{r.version}" + (f": {r.reason}" if r.reason else "")
        for r in results
    ]
    _emit(as_json, {"ok": True, "results": [r.to_json() for r in results]}, lines)
    if any(r.outcome == "refused" for r in results):
        raise SystemExit(EXIT_REFUSED)
