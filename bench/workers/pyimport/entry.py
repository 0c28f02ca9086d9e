"""Cold-start probe: imports one module on request, so its import cost can be measured alone.

Not a ``WorkerEntrypoint``: the point is to load nothing at start-up beyond the runtime itself.
``GET /import/<module>`` imports the module and reports the modules it loaded and the Python
clock's view of the time taken (workerd coarsens and freezes clocks during synchronous work, so
the harness measures wall time and workerd CPU around the request instead).
"""

import importlib
import json
import sys
import time
from typing import Any

from js import Object, Response
from pyodide.ffi import to_js

_ALLOWED = ("workers", "edgeshelf.handler")


class Default:
    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Any) -> Any:
        url = str(request.url)
        path = url[url.index("/", 8) :].split("?", 1)[0]
        if path == "/info":
            import pyodide  # noqa: PLC0415  # only this route needs it

            body = {"python": sys.version.split()[0], "pyodide": pyodide.__version__}
            return Response.new(json.dumps(body))
        if path.startswith("/import/"):
            name = path[len("/import/") :]
            if name not in _ALLOWED:
                return Response.new(
                    "unknown module", to_js({"status": 404}, dict_converter=Object.fromEntries)
                )
            before = set(sys.modules)
            started = time.perf_counter()
            importlib.import_module(name)
            elapsed_ms = (time.perf_counter() - started) * 1000
            loaded = sorted(set(sys.modules) - before)
            body = {"module": name, "clock_ms": elapsed_ms, "loaded": loaded}
            return Response.new(json.dumps(body))
        return Response.new("ok")
