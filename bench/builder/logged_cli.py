"""``edgeshelf-builder`` with stamina's retry log lines made to say why they retried.

    python -m bench.builder.logged_cli run ...

The builder's CLI leaves logging unconfigured, so stamina's ``stamina.retry_scheduled`` warnings
reach stderr bare. This runs the same ``builder.cli.main`` with one handler that appends the
retry number, the exception that caused it and the wait, so the benchmark can say what each
retry was. The callable's arguments (a whole batch of values) are left out.
"""

from __future__ import annotations

import json
import logging
import sys

from builder.cli import main as builder_main

FIELDS = ("stamina.retry_num", "stamina.caused_by", "stamina.wait_for")


class _RetryFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {f.removeprefix("stamina."): getattr(record, f, None) for f in FIELDS}
        return f"{record.getMessage()} {json.dumps(extra)}"


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RetryFormatter())
    logger = logging.getLogger("stamina")
    logger.addHandler(handler)
    logger.propagate = False
    builder_main()


if __name__ == "__main__":
    main()
