// A host for the Worker on production's Pyodide, offline, in Node: the runtime the local stack
// uses for `--runtime pyodide-0.28` and `--runtime pyodide-314` (README, "Runtimes").
//
// Current workerd downloads Pyodide at start-up, so it cannot run here; the offline workerd runs
// Pyodide 0.26, where a JS `null` still arrives as `None`. This host loads the interpreter
// production uses (npm `pyodide`, pinned in package-lock.json) and gives the Worker the same
// surface workerd gives it:
// - the Worker's own `src/` and the pinned `workers-runtime-sdk`, copied into Pyodide's file
//   system as a deploy bundles them, plus the two runtime-internal module stand-ins of
//   ../adapter (the same files the offline workerd uses);
// - `Request`, `Response`, `Headers` and `fetch` from undici (through @miniflare/core@2),
//   `HTMLRewriter` from lol-html compiled to wasm (@miniflare/html-rewriter@2), `caches` with
//   the Cache API's documented semantics (./cache.mjs), `ctx.waitUntil`;
// - `env`: wrangler.toml's vars, the KV namespace served by the stack's workerd (the namespace the
//   local v4 API writes), and Analytics Engine logging one `analytics {json}` line per point;
// - per request, `new Default(ctx, env).fetch(request)` as current runtimes call a
//   `WorkerEntrypoint`, with `request.cf` from the `MF-CF-Blob` header as Miniflare does.
// What only real workerd shows (its HTTP parser, limits, streaming and I/O timing, memory
// snapshots) is still covered by the offline workerd runs (README).
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fetch, Headers, Request, Response } from "@miniflare/core";
import { HTMLRewriter } from "@miniflare/html-rewriter";
import { withFaults } from "../kvfaults.mjs";
import { CacheStorage } from "./cache.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ADAPTER_DIR = path.join(HERE, "..", "adapter");
// The stand-ins for runtime-internal modules the SDK imports; the offline adapter's main module
// is not needed here: the host calls `Default(ctx, env).fetch(request)` itself.
const RUNTIME_STAND_INS = ["_pyodide_entrypoint_helper.py", "_cloudflare_compat_flags.py"];
const BUNDLE = "/session/worker";

/** Runtime names and the npm aliases (package.json) holding their Pyodide. */
export const PYODIDE_RUNTIMES = {
  "pyodide-0.28": "pyodide-0.28",
  "pyodide-314": "pyodide-314",
};

export function isPyodideRuntime(runtime) {
  return Object.hasOwn(PYODIDE_RUNTIMES, runtime);
}

/** Load the runtime's Pyodide from node_modules (no network: npm's package carries it all). */
export async function loadRuntimePyodide(runtime, options = {}) {
  const pkg = PYODIDE_RUNTIMES[runtime];
  if (!pkg) throw new Error(`unknown Pyodide runtime ${runtime}`);
  const { loadPyodide } = await import(`${pkg}/pyodide.mjs`);
  return loadPyodide(options);
}

function copyPython(py, fromDir, toDir) {
  py.FS.mkdirTree(toDir);
  for (const entry of fs.readdirSync(fromDir, { withFileTypes: true })) {
    const from = path.join(fromDir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__") copyPython(py, from, `${toDir}/${entry.name}`);
    } else if (entry.name.endsWith(".py")) {
      py.FS.writeFile(`${toDir}/${entry.name}`, fs.readFileSync(from));
    }
  }
}

// What Node's HTTP client refuses in a header value (it throws): control characters but HTAB.
const UNSENDABLE_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
// Hop-by-hop headers undici refuses on a request (it throws "invalid upgrade header" and the
// like); workerd manages the connection of a subrequest itself and does not forward them.
const UNSENDABLE_NAMES = new Set(["connection", "keep-alive", "upgrade", "transfer-encoding", "expect"]);

/**
 * undici's fetch, except that request headers Node cannot send (a value with a control
 * character, which workerd's own parser accepts and its fetch forwards; a hop-by-hop header)
 * are left out rather
 * than failing the subrequest: a limit of this host's transport, not of the Worker.
 */
function hostFetch(input, init) {
  const request = new Request(input, init);
  const sendable = [...request.headers].filter(
    ([name, value]) => !UNSENDABLE_NAMES.has(name) && !UNSENDABLE_VALUE.test(value),
  );
  if (sendable.length === [...request.headers].length) return fetch(request);
  return fetch(new Request(request, { headers: sendable }));
}

function installGlobals() {
  // The Worker's `from js import ...` reads globalThis, as in workerd.
  Object.assign(globalThis, {
    Request,
    Response,
    Headers,
    fetch: hostFetch,
    HTMLRewriter,
    caches: new CacheStorage({ Request, Response }),
  });
}

/**
 * A KV binding over a KV namespace (here Miniflare's proxy of workerd's own namespace), with
 * the stack's injected read faults when asked (../kvfaults.mjs), as the workerd stack has them.
 */
export function kvBinding(namespace, faults = false) {
  const binding = {
    get: (key, options) => namespace.get(key, options),
    getWithMetadata: (key, options) => namespace.getWithMetadata(key, options),
    put: (key, value, options) => namespace.put(key, value, options),
    delete: (key) => namespace.delete(key),
    list: (options) => namespace.list(options),
  };
  return faults ? withFaults(binding) : binding;
}

/** Analytics Engine as the local stack records it: one `analytics {json}` line per point. */
export function analyticsRecorder(dataset) {
  return {
    writeDataPoint(point) {
      console.log("analytics " + JSON.stringify({ dataset, ...point }));
    },
  };
}

function executionContext() {
  return {
    waitUntil(promise) {
      Promise.resolve(promise).catch((err) => {
        console.error(`waitUntil rejected: ${err?.stack ?? err}`);
      });
    },
    passThroughOnException() {},
  };
}

function requestUrl(req, fallbackHost) {
  // As workerd: the URL is the Host header and the request target.
  for (const authority of [req.headers.host, fallbackHost]) {
    if (!authority) continue;
    try {
      return new URL(`http://${authority}${req.url}`).href;
    } catch {
      // an unusable Host header: the listening address instead
    }
  }
  return null;
}

async function toWorkerRequest(req, { fallbackHost, defaultCf }) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const url = requestUrl(req, fallbackHost);
  if (url === null) return null;
  let cf = defaultCf;
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    const value = req.rawHeaders[i + 1];
    if (name.toLowerCase() === "mf-cf-blob") {
      try {
        cf = JSON.parse(value);
      } catch {
        // Miniflare would refuse the request; a default cf is the kinder stand-in
      }
      continue;
    }
    try {
      headers.append(name, value);
    } catch {
      return null; // a value undici refuses (workerd's parser would have refused it too)
    }
  }
  const hasBody = !["GET", "HEAD"].includes(req.method);
  return new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? Buffer.concat(chunks) : undefined,
    redirect: "manual",
    cf: { ...cf },
  });
}

async function writeResponse(res, response, method) {
  res.statusCode = response.status;
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") res.appendHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length) res.setHeader("set-cookie", cookies);
  if (method === "HEAD" || response.body === null) {
    res.end();
    return;
  }
  for await (const chunk of response.body) res.write(chunk);
  res.end();
}

/**
 * Start the Worker from `srcDir` on `runtime` and serve it over HTTP.
 * Returns {url, server, pyodide, close()}.
 */
export async function startPyodideWorker({
  runtime,
  srcDir,
  sdkDir,
  env,
  host = "127.0.0.1",
  port = 0,
  cf = {},
}) {
  const started = Date.now();
  const py = await loadRuntimePyodide(runtime);
  installGlobals();
  copyPython(py, srcDir, BUNDLE);
  copyPython(py, path.join(sdkDir, "workers"), `${BUNDLE}/workers`);
  for (const name of RUNTIME_STAND_INS) {
    py.FS.writeFile(`${BUNDLE}/${name}`, fs.readFileSync(path.join(ADAPTER_DIR, name)));
  }
  py.runPython(`
import sys
sys.path.insert(0, ${JSON.stringify(BUNDLE)})
import entry
from workers.rpc import python_from_rpc, python_to_rpc

async def serve(request, ctx, env):
    # As the runtime's introspection.wrapper_func calls a WorkerEntrypoint's fetch.
    response = await entry.Default(ctx, env).fetch(python_from_rpc(request))
    return python_to_rpc(response)
`);
  const serve = py.globals.get("serve");

  async function handle(req, res) {
    try {
      const request = await toWorkerRequest(req, {
        fallbackHost: `${host}:${server.address().port}`,
        defaultCf: cf,
      });
      if (request === null) {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end("bad request\n");
        return;
      }
      const pending = serve(request, executionContext(), env);
      let response;
      try {
        response = await pending;
      } finally {
        pending.destroy();
      }
      await writeResponse(res, response, req.method);
    } catch (err) {
      // Never expected: the Worker answers every request itself. Loud, so tests see it.
      console.error(`pyodide host: request failed: ${err?.stack ?? err}`);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("pyodide host error\n");
      } else {
        res.destroy();
      }
    }
  }

  // Cloudflare takes up to 128 KB of request headers (Node: 16 KB), and header values with
  // control characters such as DEL that Node's strict parser refuses.
  const server = http.createServer(
    { maxHeaderSize: 128 * 1024, insecureHTTPParser: true },
    handle,
  );
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const version = py.runPython(
    "import sys, pyodide; f'{pyodide.__version__} / Python {sys.version.split()[0]}'",
  );
  console.log(`pyodide host: ${runtime} (${version}) ready in ${Date.now() - started} ms`);
  return {
    url: `http://${host}:${server.address().port}`,
    server,
    pyodide: py,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
