"""The one layer that reaches into the wasmtime C API through ctypes.

`calls` is the reflection-free path for calls into the guest and for host callbacks;
`memory` is the host memory creator that accounts each invocation's linear memories.
Nothing else in the project imports `wasmtime._ffi` or ctypes.
"""

from .calls import (
    HANDLER_INTERFACE,
    HOST_INTERFACE,
    HostHandler,
    HostTrap,
    InvokeExport,
    InvokeFunc,
    context_key,
    link_host,
)
from .memory import MEMORY_LIMIT, MemoryAccount, accounting, install_memory_creator

__all__ = [
    "HANDLER_INTERFACE",
    "HOST_INTERFACE",
    "MEMORY_LIMIT",
    "HostHandler",
    "HostTrap",
    "InvokeExport",
    "InvokeFunc",
    "MemoryAccount",
    "accounting",
    "context_key",
    "install_memory_creator",
    "link_host",
]
