"""edgeshelf's Worker entry point: a thin adapter from the runtime to ``edgeshelf.handler``."""

from typing import Any

from workers import WorkerEntrypoint

from edgeshelf.handler import handle


class Default(WorkerEntrypoint):  # type: ignore[misc]  # the SDK is untyped outside workerd
    async def fetch(self, request: Any) -> Any:
        # The SDK wraps `env` to convert arguments on every binding call; the read path builds
        # its JS option objects once per isolate, so it talks to the raw bindings instead.
        return await handle(request, getattr(self.env, "_env", self.env), self.ctx)
