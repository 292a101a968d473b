"""Webhook triggers: an aiohttp server where `POST <path>` with a JSON body starts a run of
the workflow whose webhook trigger names that path, with the body as its input.

Answers: 202 `{"run_id"}`; 404 no webhook at the path; 405 not a POST; 413 body past the
cap; 401 signature missing or wrong, or timestamp stale; 409 a signed delivery seen before;
400 body not JSON; 422 the run refused its input; 503 the signing secret is unavailable.
Every error body is `{"error": "<what was wrong and how to fix it>"}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final

from aiohttp import web

from flowforge.control.scheduler import RunInputInvalid
from flowforge.control.secrets import SecretError, SecretStore
from flowforge.control.workflow.spec import WebhookTrigger

from .clock import Clock
from .registry import RegisteredTrigger, StartRun, TriggerRefused
from .signature import (
    MAX_AGE_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    check_signature,
)
from .store import TriggerStore

log = logging.getLogger("flowforge.triggers")

MAX_BODY_BYTES: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port`; an empty host is every interface) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not host:port, e.g. 127.0.0.1:8080 (port 0 = any free)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class WebhookServer:
    """Serves the webhook triggers on one address; `set_routes` swaps what it serves."""

    def __init__(
        self,
        listen: str,
        start_run: StartRun,
        store: TriggerStore,
        clock: Clock,
        *,
        secrets: SecretStore | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.listen = parse_listen(listen)
        self.start_run = start_run
        self.store = store
        self.clock = clock
        self.secrets = secrets
        self.max_body = max_body
        self.routes: dict[str, RegisteredTrigger] = {}
        self.address = ""
        self._runner: web.AppRunner | None = None

    def set_routes(self, triggers: Iterable[RegisteredTrigger]) -> list[str]:
        """Serve these webhook triggers; returns the problems (a path claimed twice keeps
        its first claimant, in project/workflow order)."""
        routes: dict[str, RegisteredTrigger] = {}
        problems = []
        for trigger in triggers:
            if not isinstance(trigger.spec, WebhookTrigger):
                continue
            taken = routes.get(trigger.spec.path)
            if taken is not None:
                problems.append(
                    f"{trigger.label}: webhook path {trigger.spec.path} is taken by "
                    f"{taken.label}; give one of them another path"
                )
                continue
            routes[trigger.spec.path] = trigger
        self.routes = routes
        return problems

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            await self._runner.cleanup()
            raise OSError(f"webhooks cannot listen on {host}:{port}: {exc.strerror}") from exc
        bound = sock.getsockname()
        self.address = (
            f"[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else (f"{bound[0]}:{bound[1]}")
        )
        await web.SockSite(self._runner, sock).start()
        log.info("webhook triggers listening on http://%s", self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        trigger = self.routes.get(request.path)
        if trigger is None or not isinstance(trigger.spec, WebhookTrigger):
            return _error(404, f"no webhook trigger at {request.path}")
        if request.method != "POST":
            return _error(405, f"{request.path} takes POST with a JSON body", Allow="POST")
        body = await self._body(request)
        if body is None:
            return _error(
                413, f"the body is larger than {self.max_body} bytes, the webhook body limit"
            )
        refused = await self._check_signature(request, trigger.spec, trigger.project, body)
        if refused is not None:
            return refused
        try:
            payload: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not JSON ({exc}); send the run's input as JSON")
        info = {"type": "webhook", "path": trigger.spec.path}
        t = trigger
        try:
            run_id = await self.start_run(t.project, t.workflow, t.version, payload, info)
        except (TriggerRefused, RunInputInvalid) as exc:
            return _error(422, f"the run was refused: {exc}")
        except Exception as exc:  # the host failed; the sender may retry
            log.exception("%s: the run did not start", trigger.label)
            return _error(500, f"the run did not start: {exc}")
        log.info("%s: started run %s", trigger.label, run_id)
        return web.json_response({"run_id": run_id}, status=202)

    async def _body(self, request: web.Request) -> bytes | None:
        """The raw body, or None past the cap (read no further than one byte over it)."""
        if request.content_length is not None and request.content_length > self.max_body:
            return None
        chunks = []
        size = 0
        while chunk := await request.content.read(_CHUNK):
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _check_signature(
        self, request: web.Request, spec: WebhookTrigger, project: str, body: bytes
    ) -> web.Response | None:
        if spec.secret is None:
            return None
        if self.secrets is None:
            return _error(
                503,
                f"this webhook is signed with the project secret {spec.secret!r}, but the "
                "server has no secret store (configure the master key, FLOWFORGE_MASTER_KEY)",
            )
        try:
            secret = await self.secrets.get(project, spec.secret)
        except SecretError as exc:
            return _error(503, f"cannot check the signature: {exc}")
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        now = self.clock.now()
        try:
            check_signature(secret, spec.secret, body, signature, timestamp, now)
        except SignatureRejected as exc:
            return _error(401, str(exc))
        if timestamp is not None and signature is not None:
            seen = hashlib.sha256(f"{request.path}\n{signature}".encode()).hexdigest()
            window = timedelta(seconds=2 * MAX_AGE_S)
            if not await self.store.first_delivery(seen, now, now - window):
                return _error(
                    409,
                    "this signed delivery was accepted already; a new delivery needs a "
                    "new timestamp and signature",
                )
        return None


__all__ = ["MAX_BODY_BYTES", "WebhookServer", "parse_listen"]
