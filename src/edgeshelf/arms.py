"""The active experiment in isolate memory, and each visitor's arm (FFI module).

``exp:active`` is read on the shell pointer's cadence (``SHELL_POINTER_TTL``), started together
with the pointer read, so the steady state adds no KV read per request. A document that does
not validate (``experiment.decode_experiment``) is ignored, with a logged problem; a read that
fails keeps the document known before. Who is enrolled and in which arm is the pure
``experiment.assign``: the same function the builder's lift report recomputes arms with.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pyodide.ffi import JsException

from . import ffi, schema
from .experiment import Arm, Experiment, assign, decode_experiment

if TYPE_CHECKING:
    from .metrics import RequestRecord

__all__ = ["ExperimentStore"]


class ExperimentStore:
    """The experiment this isolate runs (or none); one per isolate."""

    def __init__(self, kv: Any, kv_text_opts: Any, ttl_s: float) -> None:
        self._kv = kv
        self._text_opts = kv_text_opts
        self._ttl = ttl_s
        self._current: Experiment | None = None
        self._expires = 0.0  # never read yet

    def promise(self) -> Any | None:
        """A KV read of ``exp:active``, or None while the isolate's copy is fresh."""
        if self._expires > time.monotonic():
            return None
        return self._kv.get(schema.EXPERIMENT_KEY, self._text_opts)

    async def current(self, promise: Any | None, record: RequestRecord) -> Experiment | None:
        """The active experiment, after awaiting ``promise`` when one was started."""
        if promise is None:
            return self._current
        try:
            text = ffi.text(await promise)
        except JsException as exc:
            record.kv_read("error")
            record.errors.append(f"kv-experiment: {exc.name}; kept the known document")
        else:
            record.kv_read("hit" if text is not None else "miss")
            self._current = decode_experiment(text) if text is not None else None
            if text is not None and self._current is None:
                record.errors.append("experiment: exp:active is not a valid document; ignored")
        self._expires = time.monotonic() + self._ttl
        return self._current

    @staticmethod
    def arm_for(experiment: Experiment | None, uid: str | None) -> Arm | None:
        """The visitor's arm; None when no experiment runs or the visitor has no ID."""
        if experiment is None or uid is None:
            return None
        return assign(experiment, uid)
