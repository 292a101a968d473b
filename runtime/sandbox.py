"""The sandbox: the one entry point that runs a connector component.

Each invocation gets a fresh Store with its own limits and its own capabilities (logs,
secrets, network); nothing survives from one call to the next. The worker, the
marketplace's conformance check and `flowforge connector run` all come through here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import wasmtime
from wasmtime.component import Linker

from ._capi import MEMORY_LIMIT, HostTrap, MemoryAccount, accounting, context_key, link_host
from .cache import CompileCache
from .engine import epoch_ticks, get_engine
from .limits import Limits
from .loader import LoadedComponent, load_component, read_source
from .log import LogCapture
from .network import NetworkPolicy, Upstream
from .outcome import ConnectorFailed, Outcome, SandboxStopped, Stats, StopReason, Success
from .package import VerifiedPackage, verify_package
from .secrets import SecretGrants
from .trust import TrustStore
from .values import Failure, HttpRequest, HttpResponse, LogLevel

T = TypeVar("T")

_MAX_FAILURE_MESSAGE = 16 * 1024


@dataclass(frozen=True, slots=True)
class Grants:
    """What one step may reach: secret values by name, and network host patterns."""

    secrets: Mapping[str, str] = field(default_factory=dict)
    network: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadedPackage:
    """A verified package (manifest, signer, `unsigned_dev`) and its loaded component."""

    package: VerifiedPackage
    component: LoadedComponent


@lru_cache(maxsize=256)
def _policy(patterns: tuple[str, ...]) -> NetworkPolicy:
    return NetworkPolicy.from_patterns(patterns)


class _Invocation:
    """The host side of one call: the capabilities the guest reaches through `host`."""

    def __init__(
        self, grants: Grants, limits: Limits, deadline: float, upstream: Upstream | None = None
    ) -> None:
        self.limits = limits
        self.deadline = deadline
        self.secrets = SecretGrants(grants.secrets)
        policy = _policy(tuple(grants.network))
        self.network = policy if upstream is None else policy.with_upstream(upstream)
        self.logs = LogCapture(limits, self.secrets.scrub)
        self.http_requests = 0
        self.stop: tuple[StopReason, str] | None = None

    def log(self, level: LogLevel, message: str) -> None:
        self.logs.add(level, message)

    def secret(self, name: str) -> tuple[bool, str]:
        return self.secrets.read(name)

    def fetch(self, request: HttpRequest) -> HttpResponse | str:
        self.http_requests += 1
        if self.http_requests > self.limits.http_requests:
            return f"request limit reached: at most {self.limits.http_requests} per invocation"
        result = self.network.fetch(
            request, deadline=self.deadline, max_response_bytes=self.limits.http_response_bytes
        )
        if time.monotonic() > self.deadline:
            message = f"the wall-clock limit of {self.limits.timeout_s:g} s was reached"
            self.stop = ("timeout", message)
            raise HostTrap(message)
        return self.secrets.scrub(result) if isinstance(result, str) else result


class Sandbox:
    """Loads components and runs them; safe to share between threads."""

    def __init__(self, cache: CompileCache | None = None, max_workers: int | None = None) -> None:
        self.engine = get_engine()
        self.cache = cache or CompileCache()
        self._loaded: dict[str, LoadedComponent] = {}
        self._active: dict[int, _Invocation] = {}
        self._linker = Linker(self.engine)
        self._linker.add_wasip2()
        link_host(self._linker, self._active.__getitem__)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers or os.cpu_count() or 2, thread_name_prefix="flowforge-wasm"
        )

    def load(self, source: Path | bytes, name: str | None = None) -> LoadedComponent:
        """Compile (or take from the caches) and check a component; raises LoadError."""
        data = read_source(source)
        label = name or (str(source) if isinstance(source, Path) else "component")
        loaded = load_component(self.engine, data, self.cache, label)
        return self._loaded.setdefault(loaded.sha256, loaded)

    def load_package(
        self, source: Path | bytes, trust: TrustStore, *, allow_unsigned_dev: bool = False
    ) -> LoadedPackage:
        """Verify a package (signature, key trusted for its publisher, digest), then load its
        component through `load`, so the world check applies as to any component.

        Raises PackageError (PackageRefused for an untrusted one) or LoadError.
        """
        package = verify_package(source, trust, allow_unsigned_dev=allow_unsigned_dev)
        return LoadedPackage(package, self.load(package.component, package.label))

    def run(
        self,
        component: LoadedComponent,
        *,
        config: str = "{}",
        input: str = "{}",
        grants: Grants | None = None,
        limits: Limits | None = None,
        network_upstream: Upstream | None = None,
    ) -> Outcome:
        """Run `invoke(config, input)` in a fresh store. Never raises for guest behaviour.

        `network_upstream` is for test harnesses only (`flowforge connector test`): granted
        requests go to it instead of the network, after the same grant check. It is a
        keyword of this host-side call, deliberately not a field of `Grants`, so nothing
        that builds grants from a workflow or a task message can set it.
        """
        limits = limits or Limits()
        started = time.monotonic()
        call = _Invocation(grants or Grants(), limits, started + limits.timeout_s, network_upstream)
        store = wasmtime.Store(self.engine)
        memory = MemoryAccount(limits.memory_bytes)  # enforces the limit and records the peak
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(epoch_ticks(limits.timeout_s))
        if component.imports_wasi:
            # Nothing granted: no dirs, env, args or sockets; output becomes log lines.
            wasi = wasmtime.WasiConfig()
            wasi.stdout_custom = call.logs.stream("stdout")
            wasi.stderr_custom = call.logs.stream("stderr")
            store.set_wasi(wasi)
        key = context_key(store)
        self._active[key] = call
        try:
            result = self._call(store, component, config, input, limits, memory)
        except HostTrap as exc:
            reason, message = call.stop or ("trap", str(exc))
            result = (reason, message)
        finally:
            del self._active[key]
        stats = Stats(
            wall_ms=(time.monotonic() - started) * 1000,
            fuel_used=limits.fuel - store.get_fuel(),
            peak_memory_bytes=memory.peak_bytes,
            http_requests=call.http_requests,
        )
        logs = call.logs.lines()
        scrub = call.secrets.scrub
        if isinstance(result, tuple):
            return SandboxStopped(result[0], scrub(result[1]), logs, stats)
        if isinstance(result, Failure):
            message = scrub(result.message[:_MAX_FAILURE_MESSAGE])
            return ConnectorFailed(
                Failure(result.kind, message, result.retry_after_ms), logs, stats
            )
        if len(result.encode("utf-8")) > limits.output_bytes:
            message = f"output exceeds the {limits.output_bytes} byte limit"
            return SandboxStopped("output-too-large", message, logs, stats)
        try:
            output = scrub.json(result) if call.secrets.reads else _checked_json(result)
        except ValueError as exc:
            bad = Failure("internal", f"connector returned output that is not JSON: {exc}")
            return ConnectorFailed(bad, logs, stats)
        return Success(output, logs, stats)

    def _call(
        self,
        store: wasmtime.Store,
        component: LoadedComponent,
        config: str,
        input: str,
        limits: Limits,
        memory: MemoryAccount,
    ) -> str | Failure | tuple[StopReason, str]:
        try:
            with accounting(memory):
                instance = self._linker.instantiate(store, component.component)
            invoke = component.invoke.bind(instance, store)
            if invoke is None:  # the world check makes this unreachable for loaded components
                return ("trap", "the instance has no handler.invoke export")
            return invoke(store, config, input)
        except wasmtime.WasmtimeError as exc:
            return classify_trap(str(exc), limits, memory)

    async def run_async(
        self,
        component: LoadedComponent,
        *,
        config: str = "{}",
        input: str = "{}",
        grants: Grants | None = None,
        limits: Limits | None = None,
    ) -> Outcome:
        """`run` on the sandbox's threads, so the event loop keeps serving others."""
        return await self.in_thread(
            lambda: self.run(component, config=config, input=input, grants=grants, limits=limits)
        )

    async def in_thread(self, call: Callable[[], T]) -> T:
        """`call()` on the sandbox's threads: for a caller whose `run` comes with blocking
        work of its own (one hop from the event loop for both)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _checked_json(text: str) -> str:
    json.loads(text)
    return text


def trap_cause(message: str) -> str:
    """The line that says why, from a wasmtime error (its backtrace is not for users)."""
    _, sep, cause = message.partition("Caused by:")
    lines = [ln.strip() for ln in (cause if sep else message).strip().splitlines()]
    return next((ln for ln in lines if ln), "trap")


def classify_trap(message: str, limits: Limits, memory: MemoryAccount) -> tuple[StopReason, str]:
    """Name the reason wasmtime stopped a guest, from its error text and what it was refused.

    A guest whose memory growth was refused sees `memory.grow` return -1 and usually traps
    soon after; that trap is reported as the memory limit it follows from.
    """
    cause = trap_cause(message)
    text = cause.lower()
    if memory.refused or cause.startswith(MEMORY_LIMIT):
        mib = limits.memory_bytes / (1 << 20)
        asked = memory.refused_request_bytes / (1 << 20)
        return ("memory-limit", f"memory limit of {mib:g} MiB reached (asked for {asked:g} MiB)")
    if "all fuel consumed" in text:
        return ("fuel-exhausted", f"the fuel budget of {limits.fuel} was used up")
    if "interrupt" in text:
        return ("timeout", f"the wall-clock limit of {limits.timeout_s:g} s was reached")
    return ("trap", cause)
