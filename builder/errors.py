"""Every error the builder raises on purpose, in one place.

Callers (the CLI, cron wrappers, tests) catch :class:`BuilderError` and read its ``exit_code``::

    BuilderError                  base class; never raised itself
    ├── ConfigError               exit 2  missing or invalid configuration (names the variable)
    ├── StateError                exit 2  state file unreadable or bound to another namespace
    ├── InputError                exit 3  input refused before anything is written (file/row/column)
    ├── PayloadError              exit 3  a computed value breaks a KV or Worker size limit
    ├── MassDeleteError           exit 3  the plan would delete too much of what is published
    ├── LockedError               exit 4  another run holds the lock
    ├── APIError                  exit 5  Cloudflare refused a request (auth, bad request, ...)
    │   └── RetryableAPIError             429, 5xx, timeouts, dropped connections
    │       ├── RateLimitedError          429; carries ``retry_after`` seconds
    │       └── PartialWriteError         a bulk request left ``unsuccessful_keys``
    └── PublishIncompleteError    exit 1  the run ended with keys not confirmed by Cloudflare

Messages never contain the API token: it lives only in the HTTP client's headers, and no
error here is built from request headers.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "BuilderError",
    "ConfigError",
    "InputError",
    "LockedError",
    "MassDeleteError",
    "PartialWriteError",
    "PayloadError",
    "PublishIncompleteError",
    "RateLimitedError",
    "RetryableAPIError",
    "StateError",
]


class BuilderError(Exception):
    """Base class of the builder's errors; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(BuilderError):
    """Configuration is missing or invalid; the message names the variable or option."""

    exit_code = 2


class StateError(BuilderError):
    """The local state file cannot be used (corrupt, or recorded for another namespace)."""

    exit_code = 2


class InputError(BuilderError):
    """An input file was refused; nothing was published from it."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        file: str,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.row = row
        self.column = column


class PayloadError(BuilderError):
    """A computed key or value is larger than Workers KV or the Worker accept."""

    exit_code = 3


class MassDeleteError(BuilderError):
    """The plan deletes a large share of the published keys: usually a truncated input."""

    exit_code = 3


class LockedError(BuilderError):
    """Another builder process holds the state lock (overlapping cron runs)."""

    exit_code = 4


class APIError(BuilderError):
    """Cloudflare answered with an error that retrying will not fix."""

    exit_code = 5

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableAPIError(APIError):
    """A failure worth retrying: 5xx, timeouts, dropped connections."""


class RateLimitedError(RetryableAPIError):
    """HTTP 429; ``retry_after`` is the server's ``retry-after`` in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class PartialWriteError(RetryableAPIError):
    """A bulk request succeeded only in part; ``keys`` are the ones still to do."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"{len(keys)} keys were not written and will be retried")
        self.keys = keys


class PublishIncompleteError(BuilderError):
    """The run finished but some keys were not confirmed; a rerun will write them."""

    exit_code = 1
