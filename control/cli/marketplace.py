"""`flowforge marketplace ...`: publish, browse, install, mirror and serve connectors.

Every command works on a registry: `--registry DB_URL` or $FLOWFORGE_REGISTRY (a
`sqlite+aiosqlite:///PATH` or `postgresql+asyncpg://...` URL), else the workspace's own
SQLite registry in `<workspace>/registry/`; package blobs live in `--blobs DIR`
($FLOWFORGE_REGISTRY_BLOBS), else `<workspace>/registry/blobs`.

search, info, publish, download and install also talk to a served registry
(`flowforge marketplace serve` or `flowforge server`) with `--server` / $FLOWFORGE_SERVER
and a token (`--token` / $FLOWFORGE_TOKEN). Both kinds are a `RegistryClient`, so each
command has one code path. yank, approve, export and import stay local: the API has no
calls for them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from flowforge.control.api.client import SERVER_ENV, TOKEN_ENV, ClientConfigError, connect
from flowforge.control.api.marketplace_client import ApiError, RegistryClient, RemoteRegistry
from flowforge.control.api.marketplace_convert import serves_yanked
from flowforge.control.keys import KeyStoreError, list_keys, load_private_key
from flowforge.control.storage import StorageError
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
from flowforge.runtime.files import write_atomically
from flowforge.runtime.package import PACKAGE_SUFFIX, PackageError, read_package
from flowforge.runtime.signing import KeyFormatError, parse_public_key

from .audit import record_local
from .options import (
    EXIT_REFUSED,
    EXIT_USAGE,
    fail,
    open_trust_store,
    output_option,
    passphrase_option,
    read_passphrase,
    tls_server_options,
    workspace_option,
)

BLOBS_ENV = "FLOWFORGE_REGISTRY_BLOBS"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Where:
    """Which registry a command works on: a local one (database URL and blob folder,
    defaults from the workspace), or a served one when `server` is set."""

    workspace: Path | None
    url: str | None
    blobs: Path | None
    server: str | None = None
    token: str | None = None
    tls_ca: Path | None = None

    @property
    def root(self) -> Path:
        return workspace_dir(self.workspace)

    @property
    def source(self) -> str:
        """The registry, as audit entries name it: the server, else the database URL
        (its password masked: audit details never hold a secret)."""
        if self.server:
            return self.server
        try:
            return make_url(self.local()[0]).render_as_string(hide_password=True)
        except ArgumentError:
            return "(unparsable registry URL)"

    def local(self) -> tuple[str, Path]:
        """The local registry's database URL and blob folder."""
        folder = self.root / "registry"
        url = self.url or os.environ.get(REGISTRY_ENV) or default_url(folder)
        return url, self.blobs or Path(os.environ.get(BLOBS_ENV) or folder / "blobs")


def _local_options(func: F) -> F:
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


def registry_options(func: F) -> F:
    """A local registry's options; the command receives them as `where: Where`."""

    @functools.wraps(func)
    def command(
        *args: Any, workspace: Path | None, registry_url: str | None, blobs: Path | None, **kw: Any
    ) -> Any:
        return func(*args, where=Where(workspace, registry_url, blobs), **kw)

    return _local_options(command)  # type: ignore[return-value]


def served_registry_options(func: F) -> F:
    """registry_options plus --server, --token and --tls-ca: with a server (or
    $FLOWFORGE_SERVER) the command is a client of its MarketplaceService."""

    @functools.wraps(func)
    def command(
        *args: Any,
        workspace: Path | None,
        registry_url: str | None,
        blobs: Path | None,
        server: str | None,
        token: str | None,
        tls_ca: Path | None,
        **kw: Any,
    ) -> Any:
        where = Where(workspace, registry_url, blobs, server or None, token, tls_ca)
        return func(*args, where=where, **kw)

    decorated: Any = command
    decorated = click.option(
        "--tls-ca",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="With --server: PEM file of the CA that signed the server's certificate "
        "(implies TLS).",
    )(decorated)
    decorated = click.option(
        "--token",
        envvar=TOKEN_ENV,
        default=None,
        help=f"With --server: bearer token (${TOKEN_ENV}); viewer to read, publisher to "
        "publish (`flowforge token create`).",
    )(decorated)
    decorated = click.option(
        "--server",
        envvar=SERVER_ENV,
        default=None,
        metavar="URL",
        help=f"A served registry: host:port or https://host:port (${SERVER_ENV}). "
        "Default: the local registry (--registry, --blobs).",
    )(decorated)
    return _local_options(decorated)  # type: ignore[no-any-return]


def _say(message: str) -> None:
    click.echo(message, err=True)


def _guarded(label: str, as_json: bool, job: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `job`; the registry's typed errors (local or from the API) become clear exits."""
    try:
        return asyncio.run(job())
    except PublishRefused as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=f"refused-{exc.check}")
    except ApiError as exc:
        kind = exc.code.name.lower().replace("_", "-")
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=kind)
    except (NotFound, Unauthorized, InstallRefused, BundleError) as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind=type(exc).__name__)
    except (InvalidRequest, DatabaseError, LockFileError, RegistryError) as exc:
        fail(str(exc), as_json=as_json, kind=type(exc).__name__)
    except ClientConfigError as exc:
        fail(str(exc), code=EXIT_USAGE, as_json=as_json, kind="config")
    except OSError as exc:
        fail(f"registry {label}: {exc}", as_json=as_json, kind="io")


def _run_local(where: Where, as_json: bool, operation: Callable[[Registry], Awaitable[T]]) -> T:
    """Open the local registry, run `operation`, close."""
    url, blob_dir = where.local()

    async def go() -> T:
        registry = await Registry.open(url, blob_dir)
        try:
            return await operation(registry)
        finally:
            await registry.close()

    return _guarded(url, as_json, go)


def _run(where: Where, as_json: bool, operation: Callable[[RegistryClient], Awaitable[T]]) -> T:
    """Run `operation` on the served registry when a server is given, else the local one."""
    server = where.server
    if server is None:
        return _run_local(where, as_json, operation)
    if where.url or where.blobs:
        fail(
            "--registry and --blobs name a local registry; with --server (or "
            f"${SERVER_ENV}) the server's registry is used: drop one of them",
            as_json=as_json,
        )

    async def go() -> T:
        async with connect(server, where.token, workspace=where.root, tls_ca=where.tls_ca) as api:
            return await operation(RemoteRegistry(api.marketplace, api.address))

    return _guarded(server, as_json, go)


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
    """Publish connectors to a registry, find, inspect and install them; serve a registry.

    \b
    Examples:
      flowforge marketplace publish dist/encode-1.0.0.ffpkg
      flowforge marketplace install acme/encode@^1
      flowforge marketplace serve --listen 0.0.0.0:50051
      flowforge marketplace search base64 --server registry.example.com:50051 --token ffp_...
    """


@marketplace.command("publish")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--public-key",
    default=None,
    help="The signer's public key line (or .pub file), needed the first time the registry "
    "sees the key. Default: found among your keys (flowforge keys list) by fingerprint.",
)
@served_registry_options
def publish(package: Path, public_key: str | None, output: str, where: Where) -> None:
    """Run the publishing checks on PACKAGE and store it in the registry.

    Checks, in order: signature and namespace ownership, version is new, world, the
    manifest examples pass in the sandbox, semver hygiene. The score is measured here.

    \b
    Exit codes: 0 published (or already there, same bytes); 1 refused; 2 usage.

    \b
    Examples:
      flowforge marketplace publish connectors/encode/dist/encode-0.1.0.ffpkg
      flowforge marketplace publish encode-0.1.0.ffpkg --server registry.example.com:50051
    """
    as_json = output == "json"
    data = package.read_bytes()
    raw = _public_key(data, public_key, as_json)
    _say(f"checking {package} (signature, namespace, version, world, examples, semver)...")
    result = _run(where, as_json, lambda r: r.publish(data, raw))
    if where.server is None:  # a served registry records the publish in its own log
        record_local(
            where.workspace,
            "marketplace.publish",
            f"{result.name}@{result.version}",
            {"package_sha256": result.package_sha256, "signer": result.info.signer,
             "created": result.created, "registry": where.source},
        )  # fmt: skip
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
@served_registry_options
def search(
    query: str,
    language: str | None,
    min_score: int,
    capability: str | None,
    output: str,
    where: Where,
) -> None:
    """Find connectors whose name or description holds every word of QUERY.

    \b
    \b
    Examples:
      flowforge marketplace search base64 --language zig --min-score 70
      flowforge marketplace search base64 --server 127.0.0.1:50052 --token ff_...
    """
    as_json = output == "json"
    hits = _run(
        where,
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
@served_registry_options
def info(ref: str, output: str, where: Where) -> None:
    """Show a connector's versions, score breakdown, capabilities and publisher key.

    \b
    \b
    Examples:
      flowforge marketplace info flowforge/encode@0.1.0
      FLOWFORGE_SERVER=127.0.0.1:50052 flowforge marketplace info flowforge/encode
    """
    as_json = output == "json"
    name, version = _split(ref, None)
    package = _run(where, as_json, lambda r: r.info(name, version))
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
@served_registry_options
def install_command(ref: str, update: bool, output: str, where: Where) -> None:
    """Install a connector: resolve RANGE (^1.2, ~1.2.3, '>=1,<2', 1.2.3, *), download,
    verify against the trust store, precompile, record it in flowforge.lock.

    \b
    Exit codes: 0 installed; 1 refused (untrusted, digest differs from the lock, ...).

    \b
    With --server the package is downloaded through the API; the verification against
    this workspace's trust store, the precompile and the lock file are the same.

    \b
    Examples:
      flowforge marketplace install flowforge/encode@^0.1
      flowforge marketplace install flowforge/encode@^0.1 --server 127.0.0.1:50052
    """
    as_json = output == "json"
    name, spec = _split(ref, "*")
    trust = open_trust_store(where.workspace, as_json)
    done = _run(
        where,
        as_json,
        lambda r: install(r, where.root, trust, name, spec or "*", update=update, progress=_say),
    )
    record_local(
        where.workspace,
        "marketplace.install",
        f"{done.name}@{done.version}",
        {"package_sha256": done.package_sha256, "registry": where.source},
    )
    moved = f" (was {done.previous.version})" if done.previous else ""
    _emit(
        as_json,
        {"ok": True, "name": done.name, "version": done.version,
         "package_sha256": done.package_sha256, "path": str(done.path)},
        [f"installed {done.name}@{done.version}{moved} -> {done.path}"],
    )  # fmt: skip


@marketplace.command("download")
@click.argument("ref", metavar="NAME[@RANGE]")
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path),
    default=None,
    help="File or folder to write. Default: ./<name>-<version>.ffpkg.",
)
@served_registry_options
def download(ref: str, target: Path | None, output: str, where: Where) -> None:
    """Download the package file of the newest version of NAME in RANGE (an exact version
    is served even when yanked). Nothing is verified or installed: `connector verify`
    checks the file, `install` does both.

    \b
    Examples:
      flowforge marketplace download flowforge/encode@^0.1
      flowforge marketplace download flowforge/encode@0.1.0 --to pkgs/ --server 127.0.0.1:50052
    """
    as_json = output == "json"
    name, spec = _split(ref, "*")
    wanted = spec or "*"

    async def fetch(r: RegistryClient) -> tuple[VersionInfo, bytes]:
        picked = await r.resolve(name, wanted, include_yanked=serves_yanked(wanted))
        return picked, await r.download(name, f"={picked.version}", include_yanked=True)

    picked, data = _run(where, as_json, fetch)
    filename = f"{name.rsplit('/', 1)[-1]}-{picked.version}{PACKAGE_SUFFIX}"
    path = target or Path(filename)
    if path.is_dir():
        path = path / filename
    try:
        write_atomically(path, data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc}", code=EXIT_REFUSED, as_json=as_json, kind="io")
    _emit(
        as_json,
        {"ok": True, "name": name, "version": picked.version,
         "package_sha256": picked.package_sha256, "bytes": len(data), "path": str(path)},
        [f"downloaded {name}@{picked.version} ({len(data)} bytes) -> {path}"],
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
def yank(ref: str, key_name: str, passphrase_stdin: bool, output: str, where: Where) -> None:
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
    done = _run_local(where, as_json, lambda r: r.yank(name, version, auth))
    record_local(
        where.workspace,
        "marketplace.yank",
        f"{name}@{version}",
        {"key": auth.key, "registry": where.source},
    )
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
    where: Where,
) -> None:
    """Let the key FINGERPRINT publish in NAMESPACE (signed by the owner's key).

    \b
    Example:
      flowforge marketplace approve acme ed25519:3f5a... --key release
    """
    as_json = output == "json"
    private = _private_key(key_name, passphrase_stdin, as_json)
    auth = approval_authorization(private, namespace, fingerprint)
    _run_local(where, as_json, lambda r: r.approve_key(namespace, fingerprint, auth))
    _emit(as_json, {"ok": True, "namespace": namespace, "fingerprint": fingerprint},
          [f"approved {fingerprint} to publish in {namespace}"])  # fmt: skip


@marketplace.command("export")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("names", nargs=-1)
@registry_options
def export(bundle: Path, names: tuple[str, ...], output: str, where: Where) -> None:
    """Write every version of NAMES (default: all packages) to the bundle file BUNDLE.

    \b
    Example:
      flowforge marketplace export site.ffbundle flowforge/encode flowforge/csv
    """
    as_json = output == "json"
    _say(f"exporting to {bundle}...")
    done = _run_local(where, as_json, lambda r: r.export_bundle(bundle, names))
    _emit(
        as_json,
        {"ok": True, "bundle": str(bundle), "packages": [f"{v.name}@{v.version}" for v in done]},
        [f"exported {len(done)} package version(s) to {bundle}"],
    )


@marketplace.command("import")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@registry_options
def import_(bundle: Path, output: str, where: Where) -> None:
    """Import a bundle: every package must verify against the workspace trust store, then
    each goes through the publishing checks.

    \b
    Example:
      flowforge marketplace import site.ffbundle
    """
    as_json = output == "json"
    trust = open_trust_store(where.workspace, as_json)
    _say(f"verifying and importing {bundle}...")
    results = _run_local(where, as_json, lambda r: r.import_bundle(bundle, trust))
    lines = [
        f"{r.outcome:<9} {r.name}@{r.version}" + (f": {r.reason}" if r.reason else "")
        for r in results
    ]
    _emit(as_json, {"ok": True, "results": [r.to_json() for r in results]}, lines)
    if any(r.outcome == "refused" for r in results):
        raise SystemExit(EXIT_REFUSED)


@marketplace.command("serve")
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (port 0 picks a free one; the address is printed).",
)
@click.option(
    "--registry",
    "registry_url",
    default=None,
    help=f"Registry database URL. Default: ${REGISTRY_ENV}, "
    "else sqlite+aiosqlite:///<workspace>/registry/registry.db.",
)
@click.option(
    "--blobs",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=f"Blob folder. Default: ${BLOBS_ENV}, else <workspace>/registry/blobs.",
)
@click.option(
    "--database",
    default=None,
    help="The control plane's database, which holds the tokens callers present and the "
    "audit log. Default: $FLOWFORGE_DATABASE, else the workspace's.",
)
@tls_server_options
@output_option
@workspace_option
def serve(
    listen: str,
    registry_url: str | None,
    blobs: Path | None,
    database: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    output: str,
    workspace: Path | None,
) -> None:
    """Serve the registry over gRPC (MarketplaceService: Search, Get, Publish, Download,
    with health checking and reflection) until SIGINT or SIGTERM.

    Callers present a token of this workspace's database: viewer to search, read and
    download, publisher to publish (`flowforge token create --role publisher`). Clients
    use it with `flowforge marketplace ... --server HOST:PORT`.

    \b
    Example:
      flowforge marketplace serve --listen 0.0.0.0:50051 \\
        --registry postgresql+asyncpg://registry@db/registry --blobs /srv/registry/blobs
    """
    # Imported here: the other commands never load the server, scheduler and sandbox.
    from flowforge.control.api.server import ServerConfig, ServerError

    from .server import serve_until_signalled

    as_json = output == "json"
    where = Where(workspace, registry_url, blobs)
    url, blob_dir = where.local()
    config = ServerConfig(
        workspace=where.root,
        database=database,
        listen=listen,
        with_worker=False,
        tls_cert=tls_cert,
        tls_key=tls_key,
        services=frozenset({"marketplace"}),
        registry=url,
        registry_blobs=blob_dir,
    )
    try:
        config.check()
    except ServerError as exc:
        fail(str(exc), as_json=as_json, kind="config")
    _say(f"registry {url}, blobs in {blob_dir}")
    try:
        asyncio.run(serve_until_signalled(config, output))
    except (ServerError, DatabaseError, RegistryError, StorageError, OSError) as exc:
        fail(str(exc), code=EXIT_REFUSED, as_json=as_json, kind="server")
