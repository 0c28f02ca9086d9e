"""How the builder's library reports progress, warnings and waits, and the reporter that is silent.

The library never draws anything itself: :mod:`builder.publish` reports to a :class:`Progress`,
:mod:`builder.jobs` to a :class:`Reporter` (a progress plus phases and warnings), and the CLI
(:mod:`builder.cli`) implements both with rich. :class:`Silent` is the default of every
function that takes one.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "Reporter", "Silent"]


class Progress(Protocol):
    """What the publisher reports while it sends a plan."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, n: int) -> None: ...
    def waiting(self, until: float) -> None:
        """Cloudflare answered 429: no request of the run goes out before ``until`` (epoch s)."""
        ...


class Reporter(Progress, Protocol):
    """A :class:`Progress` that also names the run's phases and passes on warnings."""

    def phase(self, name: str) -> None: ...
    def warn(self, message: str) -> None: ...


class Silent:
    """A :class:`Reporter` that reports nothing (warnings are collected in ``warnings``)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def phase(self, name: str) -> None:
        pass

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, n: int) -> None:
        pass

    def waiting(self, until: float) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)
