"""Python passthrough floor: the cached shell straight from ``caches.default``, nothing else.

What entering a Python handler costs on this runtime, with the same SDK and adapter as
edgeshelf's Worker. A miss (only while warming up) fills the cache from the origin.
"""

from typing import Any

from js import Headers, Object, Response, caches, fetch
from pyodide.ffi import to_js
from workers import WorkerEntrypoint

_PREFIX = "/__edgeshelf/shell/"
_VERSION = "/bench1"


class Default(WorkerEntrypoint):  # type: ignore[misc]  # the SDK is untyped outside workerd
    async def fetch(self, request: Any) -> Any:
        js_req = getattr(request, "js_object", request)
        url = str(js_req.url)
        cut = url.index("/", 8)
        path = url[cut:].split("?", 1)[0]
        key = url[:cut] + _PREFIX + path[1:] + _VERSION
        cached = await caches.default.match(key)
        if cached is not None:
            return cached
        origin = await fetch(str(self.env.ORIGIN_URL) + "/")
        text = await origin.text()
        headers = Headers.new()
        headers.set("content-type", "text/html; charset=utf-8")
        headers.set("cache-control", "public, s-maxage=31536000, max-age=0")
        fill = Response.new(text, to_js({"headers": headers}, dict_converter=Object.fromEntries))
        self.ctx.waitUntil(caches.default.put(key, fill.clone()))
        return fill
