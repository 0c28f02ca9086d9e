"""edgeshelf's builder: watch events in, profiles and segment shelves out, published to Workers KV.

A library of small modules with a command line on top (``edgeshelf-builder``, :mod:`builder.cli`):

- :mod:`builder.sources` validates the inputs, :mod:`builder.ranking` computes profiles,
  segments and their top-N, :mod:`builder.payloads` writes profile payloads: Ibis expressions,
  run by an engine of :mod:`builder.engines` (embedded DuckDB) or :mod:`builder.spark`;
- :mod:`builder.sample` generates a deterministic sample data set;
- :mod:`builder.plan` diffs the result against :mod:`builder.state`;
- :mod:`builder.publish` sends the plan through :mod:`builder.cloudflare` under
  :mod:`builder.limiter`;
- :mod:`builder.jobs` ties them into ``plan``, ``run``, ``gc``, ``publish_shell``, ``status``,
  reporting through :mod:`builder.reporting`;
- :mod:`builder.shellcopy` makes the shell copy ``publish_shell`` stores: the page and the
  site's headers, from a file or fetched from the origin.

Keys and payloads come from :mod:`edgeshelf.schema`, shared with the Worker.
"""

from __future__ import annotations

from builder.cloudflare import BulkPair, BulkResult, KVClient, ListedKey, make_http_client
from builder.config import Target, load_target
from builder.engines import DuckDBEngine, Engine, EngineSettings, open_engine
from builder.errors import (
    APIError,
    BuilderError,
    ConfigError,
    InputError,
    LockedError,
    MassDeleteError,
    PartialWriteError,
    PayloadError,
    PublishIncompleteError,
    RateLimitedError,
    RetryableAPIError,
    StateError,
)
from builder.jobs import RunResult, RunSettings, gc, plan, publish_shell, remote_diff, run, status
from builder.limiter import SlidingWindowLimiter
from builder.plan import Plan, PlanCounts
from builder.publish import Publisher, PublishOptions, PublishReport
from builder.ranking import Build, RankingOptions
from builder.sample import write_sample
from builder.sources import Inputs, InputStats, load_inputs
from builder.state import RunLock, State

__all__ = [
    "APIError",
    "Build",
    "BuilderError",
    "BulkPair",
    "BulkResult",
    "ConfigError",
    "DuckDBEngine",
    "Engine",
    "EngineSettings",
    "InputError",
    "InputStats",
    "Inputs",
    "KVClient",
    "ListedKey",
    "LockedError",
    "MassDeleteError",
    "PartialWriteError",
    "PayloadError",
    "Plan",
    "PlanCounts",
    "PublishIncompleteError",
    "PublishOptions",
    "PublishReport",
    "Publisher",
    "RankingOptions",
    "RateLimitedError",
    "RetryableAPIError",
    "RunLock",
    "RunResult",
    "RunSettings",
    "SlidingWindowLimiter",
    "State",
    "StateError",
    "Target",
    "gc",
    "load_inputs",
    "load_target",
    "make_http_client",
    "open_engine",
    "plan",
    "publish_shell",
    "remote_diff",
    "run",
    "status",
    "write_sample",
]
