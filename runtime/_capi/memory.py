"""Guest linear memories allocated by us, so each invocation's memory is counted and capped.

`store.set_limits(memory_size=...)` only makes `memory.grow` return -1: the host cannot tell a
refused growth from any other trap that follows, and the component API gives no access to the
guest's memories to read their size. Instead every linear memory of an engine comes from the
creator installed here (`wasmtime_config_host_memory_creator_set`), which charges it to the
`MemoryAccount` of the invocation being instantiated on the calling thread.

The contract we keep (wasmtime 50, `wasmtime::MemoryCreator` / `LinearMemory`):
- wasmtime always passes a reservation (`memory_reservation`, 4 GiB on 64-bit hosts) and a
  guard size. Compiled code elides bounds checks on the strength of them, and wasmtime's signal
  handler only recognises a fault inside base..base+reservation+guard as a wasm trap, so that
  whole range is mapped PROT_NONE up front (address space only) and growth makes
  the prefix read-write with mprotect: the base never moves. Only when the reservation is 0 may
  a memory move (a new mapping, copy, unmap).
- Memory must be zero-filled: fresh anonymous pages are.
- No Python exception may cross into C: every callback catches everything and reports an
  error through a `wasmtime_error_t` (or, for `get_memory`, which cannot fail, through sizes
  of zero; it only reads fields, so it has nothing to fail on in practice).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import CFUNCTYPE, Structure, c_char_p, c_int, c_long, c_size_t, c_void_p
from typing import Final

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "MemoryAccount",
    "accounting",
    "install_memory_creator",
    "live_memory_count",
]

_log = logging.getLogger(__name__)

MEMORY_LIMIT: Final = "memory-limit"
"""The stop reason, also the prefix of every refusal message (instantiation errors carry it)."""


class MemoryAccount:
    """One invocation's memories: limit, current total, peak, and whether growth was refused.

    `refused_request_bytes` is the size one memory asked to reach (its minimum at
    instantiation, or the size `memory.grow` asked for) when the limit refused it.
    Updated from whichever thread creates, grows or frees a memory, hence the lock.
    """

    __slots__ = (
        "_lock",
        "current_bytes",
        "limit_bytes",
        "peak_bytes",
        "refused",
        "refused_request_bytes",
    )

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.current_bytes = 0
        self.peak_bytes = 0
        self.refused = False
        self.refused_request_bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MemoryAccount(limit_bytes={self.limit_bytes}, current_bytes={self.current_bytes}, "
            f"peak_bytes={self.peak_bytes}, refused={self.refused}, "
            f"refused_request_bytes={self.refused_request_bytes})"
        )

    def _resize(self, old: int, new: int) -> bool:
        """Move one memory's charge from `old` to `new` bytes; False (and noted) if over."""
        with self._lock:
            total = self.current_bytes - old + new
            if new > old and total > self.limit_bytes:
                self.refused = True
                self.refused_request_bytes = new
                return False
            self.current_bytes = total
            if total > self.peak_bytes:
                self.peak_bytes = total
            return True


# --- libc: reserve, commit and release address space ---------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.argtypes = [c_void_p, c_size_t, c_int, c_int, c_int, c_long]
_mmap.restype = c_void_p
_mprotect = _libc.mprotect
_mprotect.argtypes = [c_void_p, c_size_t, c_int]
_mprotect.restype = c_int
_munmap = _libc.munmap
_munmap.argtypes = [c_void_p, c_size_t]
_munmap.restype = c_int
_madvise = _libc.madvise
_madvise.argtypes = [c_void_p, c_size_t, c_int]
_madvise.restype = c_int

_PROT_NONE: Final = 0
_PROT_RW: Final = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_FLAGS: Final = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_MAP_FAILED: Final = ctypes.c_void_p(-1).value
_OS_PAGE: Final = mmap.PAGESIZE
_MADV_DONTNEED: Final = getattr(mmap, "MADV_DONTNEED", 4)


def _page_up(n: int) -> int:
    return (n + _OS_PAGE - 1) & ~(_OS_PAGE - 1)


def _os_error(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what} failed (errno {errno})")


def _reserve(length: int) -> int:
    """Map `length` bytes of inaccessible address space; returns the base."""
    base = _mmap(None, length, _PROT_NONE, _MAP_FLAGS, -1, 0)
    if base is None or base == _MAP_FAILED:
        raise _os_error(f"mmap of {length} bytes")
    return int(base)


def _make_accessible(address: int, length: int) -> None:
    if length and _mprotect(address, length, _PROT_RW) != 0:
        raise _os_error(f"mprotect of {length} bytes")


def _release(address: int, length: int) -> None:
    if _munmap(address, length) != 0:
        raise _os_error(f"munmap of {length} bytes")


def _wipe(address: int, length: int) -> None:
    """Make `length` bytes inaccessible again and drop their pages (they read back as zero)."""
    if length and (
        _mprotect(address, length, _PROT_NONE) != 0
        or _madvise(address, length, _MADV_DONTNEED) != 0
    ):
        raise _os_error(f"wiping {length} bytes")


POOL_SIZE: Final = 64
"""Reservations kept for reuse. Mapping and unmapping 4 GiB of address space costs about
10 us per instantiation on a 2-core VM; wiping the touched prefix of a kept one costs less."""

_pool: dict[tuple[int, int], list[int]] = {}
"""Free reservations by (reserved, guard) size: all PROT_NONE, all pages dropped."""


def _take(reserved: int, guard: int) -> int:
    try:
        return _pool[reserved, guard].pop()
    except (KeyError, IndexError):
        return _reserve(reserved + guard)


def _give_back(base: int, accessible: int, reserved: int, guard: int) -> None:
    free = _pool.setdefault((reserved, guard), [])
    if len(free) >= POOL_SIZE:
        _release(base, reserved + guard)
        return
    try:
        _wipe(base, accessible)
    except OSError:
        _release(base, reserved + guard)
        raise
    free.append(base)


class _Linear:
    """One linear memory: [capacity: first `size` bytes usable][guard], one mapping."""

    __slots__ = ("accessible", "account", "base", "capacity", "guard", "maximum", "movable", "size")

    def __init__(
        self,
        minimum: int,
        maximum: int,
        reserved: int,
        guard: int,
        account: MemoryAccount | None,
    ) -> None:
        self.movable = reserved == 0
        self.capacity = _page_up(minimum) if self.movable else reserved
        if self.capacity < minimum:
            raise ValueError(f"minimum {minimum} bytes exceeds the reservation of {reserved}")
        self.guard = guard
        self.maximum = maximum
        self.account = account
        self.base = _reserve(self.capacity + guard) if self.movable else _take(reserved, guard)
        self.accessible = _page_up(minimum)
        try:
            _make_accessible(self.base, self.accessible)
        except BaseException:
            _release(self.base, self.capacity + guard)
            raise
        self.size = minimum

    def grow_to(self, new_size: int) -> None:
        if new_size > self.capacity:
            if not self.movable:
                raise ValueError(
                    f"cannot grow to {new_size} bytes past the reservation of {self.capacity}"
                )
            self._move(new_size)
        wanted = _page_up(new_size)
        if wanted > self.accessible:
            _make_accessible(self.base + self.accessible, wanted - self.accessible)
            self.accessible = wanted
        self.size = new_size

    def _move(self, new_size: int) -> None:
        # Doubling keeps repeated one-page grows from copying on every step.
        capacity = _page_up(min(max(new_size, 2 * self.capacity), max(new_size, self.maximum)))
        base = _reserve(capacity + self.guard)
        try:
            _make_accessible(base, _page_up(new_size))
        except BaseException:
            _release(base, capacity + self.guard)
            raise
        ctypes.memmove(base, self.base, self.size)
        _release(self.base, self.capacity + self.guard)
        self.base, self.capacity, self.accessible = base, capacity, _page_up(new_size)

    def free(self) -> None:
        if self.movable:
            _release(self.base, self.capacity + self.guard)
        else:
            _give_back(self.base, self.accessible, self.capacity, self.guard)


# --- the callbacks wasmtime calls ----------------------------------------------------------

_current = threading.local()
"""`.account`: the MemoryAccount that memories created on this thread are charged to."""

_live: dict[int, _Linear] = {}
"""Every memory wasmtime holds, by the `env` key it passes back to our callbacks."""
_keys = itertools.count(1)  # 0 would be a NULL env

_dll = ffi.dll
_error_new = CFUNCTYPE(c_void_p, c_char_p)(("wasmtime_error_new", _dll))


def _error(message: str) -> int | None:
    """A fresh `wasmtime_error_t*` (wasmtime takes ownership) as an integer address."""
    address: int | None = _error_new(message.encode("utf-8", "replace"))
    return address


def _new_memory(
    env: int | None,
    memorytype: int | None,
    minimum: int,
    maximum: int,
    reserved: int,
    guard: int,
    memory_ret: int | None,
) -> int | None:
    try:
        account: MemoryAccount | None = getattr(_current, "account", None)
        if account is not None and not account._resize(0, minimum):
            return _error(
                f"{MEMORY_LIMIT}: a linear memory needs {minimum} bytes at instantiation; "
                f"{account.current_bytes} of the {account.limit_bytes}-byte limit are in use"
            )
        try:
            memory = _Linear(minimum, maximum, reserved, guard, account)
        except BaseException:
            if account is not None:
                account._resize(minimum, 0)
            raise
        key = next(_keys)
        _live[key] = memory
        out = _LinearMemory.from_address(memory_ret or 0)
        out.env = key
        out.get_memory = _GET_MEMORY_PTR
        out.grow_memory = _GROW_MEMORY_PTR
        out.finalizer = _FINALIZE_PTR
        return None
    except BaseException as exc:
        return _error(f"cannot create a linear memory of {minimum} bytes: {exc!r}")


def _get_memory(env: int | None, byte_size: int | None, byte_capacity: int | None) -> int | None:
    try:
        memory = _live[env or 0]
        c_size_t.from_address(byte_size or 0).value = memory.size
        c_size_t.from_address(byte_capacity or 0).value = memory.capacity
        return memory.base
    except BaseException:
        # wasmtime cannot take an error here; it will abort on the NULL base. Say why first.
        _log.exception("get_memory failed for linear memory %s", env)
        return None


def _grow_memory(env: int | None, new_size: int) -> int | None:
    try:
        memory = _live[env or 0]
        old = memory.size
        account = memory.account
        if account is not None and not account._resize(old, new_size):
            return _error(
                f"{MEMORY_LIMIT}: growing a linear memory from {old} to {new_size} bytes "
                f"would pass the {account.limit_bytes}-byte limit"
            )
        try:
            memory.grow_to(new_size)
        except BaseException:
            if account is not None:
                account._resize(new_size, old)
            raise
        return None
    except BaseException as exc:
        return _error(f"cannot grow a linear memory to {new_size} bytes: {exc!r}")


def _finalize(env: int | None) -> None:
    try:
        memory = _live.pop(env or 0, None)
        if memory is None:
            return
        if memory.account is not None:
            memory.account._resize(memory.size, 0)
        memory.free()
    except BaseException:
        # wasmtime's finalizer returns void: log it, since unwinding into Rust is not an option.
        _log.exception("releasing linear memory %s failed", env)


_GetMemory = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p)
_GrowMemory = CFUNCTYPE(c_void_p, c_void_p, c_size_t)
_Finalizer = CFUNCTYPE(None, c_void_p)
_NewMemory = CFUNCTYPE(
    c_void_p, c_void_p, c_void_p, c_size_t, c_size_t, c_size_t, c_size_t, c_void_p
)

# Module globals: the trampolines must outlive every engine, which lives as long as the process.
_GET_MEMORY: Final = _GetMemory(_get_memory)
_GROW_MEMORY: Final = _GrowMemory(_grow_memory)
_FINALIZE: Final = _Finalizer(_finalize)
_NEW_MEMORY: Final = _NewMemory(_new_memory)
_GET_MEMORY_PTR: Final = ctypes.cast(_GET_MEMORY, c_void_p).value
_GROW_MEMORY_PTR: Final = ctypes.cast(_GROW_MEMORY, c_void_p).value
_FINALIZE_PTR: Final = ctypes.cast(_FINALIZE, c_void_p).value
_NEW_MEMORY_PTR: Final = ctypes.cast(_NEW_MEMORY, c_void_p).value


class _LinearMemory(Structure):
    """`wasmtime_linear_memory_t`, with the function pointers as plain addresses."""

    _fields_ = (
        ("env", c_void_p),
        ("get_memory", c_void_p),
        ("grow_memory", c_void_p),
        ("finalizer", c_void_p),
    )


class _MemoryCreator(Structure):
    """`wasmtime_memory_creator_t`."""

    _fields_ = (("env", c_void_p), ("new_memory", c_void_p), ("finalizer", c_void_p))


assert ctypes.sizeof(_LinearMemory) == ctypes.sizeof(ffi.wasmtime_linear_memory_t)
assert ctypes.sizeof(_MemoryCreator) == ctypes.sizeof(ffi.wasmtime_memory_creator_t)

# A prototype of our own, so the shared binding's argtypes stay untouched.
_creator_set = CFUNCTYPE(None, c_void_p, c_void_p)(
    ("wasmtime_config_host_memory_creator_set", _dll)
)


def install_memory_creator(config: wasmtime.Config) -> None:
    """Make every linear memory of engines built from `config` come from our creator.

    This also turns `memory_init_cow` off: wasmtime maps copy-on-write data images only into
    memories it allocated itself, and with a host memory it panics (aborting the process) on
    the first component whose data segments form an image. Data segments are copied instead.
    `memory_init_cow` is part of what a serialized artefact must match, so it belongs in the
    compile cache key.

    Do not combine with the pooling allocator: wasmtime's pooling allocator ignores a host
    memory creator, so memories would silently go uncounted.
    """
    config.memory_init_cow = False
    # wasmtime copies the struct's fields, so a temporary struct is enough.
    creator = _MemoryCreator(None, _NEW_MEMORY_PTR, None)
    _creator_set(ctypes.cast(config.ptr(), c_void_p), ctypes.byref(creator))


@contextmanager
def accounting(account: MemoryAccount) -> Iterator[None]:
    """Charge memories created on this thread while inside the block to `account`.

    `new_memory` has no store argument, and instantiation runs on the calling thread, so a
    thread-local "current account" set around instantiate is how a memory finds its
    invocation. Each memory then keeps its account for later grows (on whichever thread runs
    the guest) and for its release. Outside any block, memories have no limit.
    """
    previous: MemoryAccount | None = getattr(_current, "account", None)
    _current.account = account
    try:
        yield
    finally:
        _current.account = previous


def live_memory_count() -> int:
    """How many linear memories made by our creator are alive (for leak checks)."""
    return len(_live)
