"""Options, output and file helpers shared by the key, trust and package commands."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click

from flowforge.control.keys import PASSPHRASE_ENV
from flowforge.control.workspace import trust_store_path, workspace_dir
from flowforge.runtime.bus.messages import MessageError, check_token
from flowforge.runtime.bus.nats import DEFAULT_PREFIX
from flowforge.runtime.trust import TrustStore, TrustStoreError

EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2

F = TypeVar("F", bound=Callable[..., Any])


def workspace_option(func: F) -> F:
    return click.option(
        "--workspace",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Workspace folder (holds the trust store). "
        "Default: $FLOWFORGE_WORKSPACE, else ~/.local/share/flowforge.",
    )(func)


def output_option(func: F) -> F:
    return output_formats("table", "json")(func)


def output_formats(*formats: str) -> Callable[[F], F]:
    """`--output` limited to the formats a command can print (see `output.py`)."""
    return click.option(
        "--output",
        type=click.Choice(list(formats)),
        default="table",
        show_default=True,
        help="How to print the result.",
    )


def tls_server_options(func: F) -> F:
    """`--tls-cert` and `--tls-key` for the commands that serve gRPC."""
    func = click.option(
        "--tls-key",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="PEM private key of --tls-cert.",
    )(func)
    return click.option(
        "--tls-cert",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="PEM certificate chain: serve over TLS (with --tls-key).",
    )(func)


def _check_prefix(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        check_token("--prefix", value)
    except MessageError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def nats_prefix_option(func: F) -> F:
    """`--prefix` of the NATS stream and subject names, for the server and its workers
    (the same on both; another prefix is another installation on the same NATS)."""
    return click.option(
        "--prefix",
        "nats_prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        callback=_check_prefix,
        help="Prefix of the bus's stream and subject names (with --nats).",
    )(func)


def log_format_option(func: F) -> F:
    """`--log-format text|json` for the long-running commands (server, worker)."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines on stderr: text, or JSON lines (ts, level, logger, msg, run_id, "
        "step, attempt, trace_id, span_id).",
    )(func)


def passphrase_option(func: F) -> F:
    return click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="Read the key's passphrase from the first line of stdin.",
    )(func)


def fail(
    message: str, *, code: int = EXIT_USAGE, as_json: bool = False, kind: str = ""
) -> NoReturn:
    """Report an error on stderr (and as a JSON document on stdout with --output json)."""
    click.echo(f"error: {message}", err=True)
    if as_json:
        error = {"kind": kind or "error", "message": message}
        click.echo(json.dumps({"ok": False, "error": error}))
    sys.exit(code)


def open_trust_store(workspace: Path | None, as_json: bool = False) -> TrustStore:
    try:
        return TrustStore(trust_store_path(workspace_dir(workspace)))
    except TrustStoreError as exc:
        fail(str(exc), as_json=as_json, kind="trust-store")


def read_passphrase(from_stdin: bool, *, allow_env: bool) -> bytes | None:
    """The passphrase from stdin's first line (with --passphrase-stdin) or the environment."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("--passphrase-stdin: stdin held no passphrase")
        return line.encode("utf-8")
    if allow_env:
        env = os.environ.get(PASSPHRASE_ENV)
        if env:
            return env.encode("utf-8")
    return None
