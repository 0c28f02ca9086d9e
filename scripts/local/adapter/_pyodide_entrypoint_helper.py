"""Stand-in for a runtime-internal module of current workerd, for the offline test runtime only.

workerd 1.20241106.2 (the newest release that starts a Python Worker without the internet)
predates the ``workers`` SDK. The SDK (PyPI ``workers-runtime-sdk``) imports this module, which
current runtimes provide from JavaScript. Only what edgeshelf's code paths reach is implemented;
anything else raises so that a silent divergence from production cannot hide here.
"""

from collections.abc import Generator
from typing import Any

# Only reachable through `import_from_javascript`, which edgeshelf does not use.
cloudflareWorkersModule: Any = None
cloudflareSocketsModule: Any = None


def patchWaitUntil(ctx: Any) -> None:
    """Current runtimes let `ctx.waitUntil` take Python awaitables; edgeshelf passes JS promises."""


async def doAnImport(module_name: str) -> Any:
    raise ImportError(f"{module_name}: dynamic JS imports are not available on the offline runtime")


def patch_env_helper(kwds: Any) -> Generator[None]:
    raise NotImplementedError("workers.patch_env is not available on the offline runtime")
    yield
