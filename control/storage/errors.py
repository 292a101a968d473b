"""Typed storage errors; each message says what happened to which run or version."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the storage errors."""


class ConcurrencyConflict(StorageError):
    """An append whose expected seq is not the run's last seq: someone appended first.
    Re-read the run's events, decide again, and append after them."""

    def __init__(self, run_id: str, expected: int, actual: int | None) -> None:
        self.run_id, self.expected, self.actual = run_id, expected, actual
        now = "unknown" if actual is None else str(actual)
        super().__init__(f"run {run_id}: expected last seq {expected}, the log is at {now}")


class UnknownRun(StorageError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r}")


class DuplicateRun(StorageError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"a run {run_id!r} already exists")


class RunFinished(StorageError):
    """An append of new events to a run that has already succeeded, failed or been
    cancelled (a redelivered duplicate is still dropped quietly)."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id, self.status = run_id, status
        super().__init__(f"run {run_id} has finished ({status}); its history is closed")


class UnknownVersion(StorageError):
    def __init__(self, version: str) -> None:
        self.version = version
        super().__init__(f"no workflow version {version!r}")


class VersionMismatch(StorageError):
    """Canonical bytes whose sha256 is not the version they were stored under."""
