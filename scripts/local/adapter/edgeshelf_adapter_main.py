"""Main module on the offline test runtime: the old top-level handler calling ``Default.fetch``.

workerd 1.20241106.2 dispatches ``on_fetch(request, env, ctx)`` on the main module; current
runtimes instantiate ``Default(ctx, env)`` and call ``fetch(request)``, unwrapping a returned
``workers.Response`` through ``js_object``. This does the same, and nothing more.
"""

from typing import Any

from entry import Default


async def on_fetch(request: Any, env: Any, ctx: Any) -> Any:
    response = await Default(ctx, env).fetch(request)
    return getattr(response, "js_object", response)
