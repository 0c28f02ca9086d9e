// The local edgeshelf stack: the real Worker from src/ in workerd (with KV and the Cache API),
// the local Cloudflare v4 KV API bound to the same namespaces, and an origin stand-in.
//
//   node scripts/local/stack.mjs [--port 8787] [--api-port 8788] [--origin-port 8789]
//                                [--persist DIR] [--runtime offline|current] [--var KEY=VALUE]...
//                                [--analytics] [--kv-faults] [--quiet] [--api-defaults JSON]
// --api-defaults sets the local API's fault/limit knobs that /__edgeshelf/reset returns to
// (docs/local-api.md); by default they are the real API's limits with no faults.
// --kv-faults lets tests fail the Worker's own KV reads (./kvfaults.mjs).
//
// Prints one line `ready {json}` once everything answers, then serves until SIGINT/SIGTERM.
// `--runtime offline` (default) runs workerd 1.20241106.2 through Miniflare 3, the newest
// runtime that starts a Python Worker without the internet; it has no `workers` SDK, so the SDK
// is loaded from the installed `workers-runtime-sdk` plus the small adapter in ./adapter.
// `--runtime current` (or EDGESHELF_RUNTIME=current) runs today's workerd through Miniflare 4,
// with no adapter; it needs the internet to download Pyodide.
// `--runtime pyodide-0.28` / `pyodide-314` run the Worker on production's Pyodide in Node
// (./pyodide/host.mjs), over the same KV namespace, origin and local API, offline.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { parse as parseToml } from "smol-toml";
import { withFaults } from "./kvfaults.mjs";
import { startOrigin } from "./origin.mjs";
import {
  analyticsRecorder,
  isPyodideRuntime,
  kvBinding,
  PYODIDE_RUNTIMES,
  startPyodideWorker,
} from "./pyodide/host.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "..", "..");
const VIRTUAL_ROOT = "/edgeshelf";
export const LOCAL_ACCOUNT_ID = "0123456789abcdef0123456789abcdef";
export const RUNTIMES = ["offline", "current", ...Object.keys(PYODIDE_RUNTIMES)];
// The request.cf every request gets unless it sends `MF-CF-Blob` (Miniflare otherwise tries to
// download cf.json); tests send that header to simulate visitors from elsewhere.
const DEFAULT_CF = { country: "US", colo: "LCL", asn: 64512 };

// Stands in for Workers Analytics Engine, which Miniflare 3 lacks: a wrapped binding whose
// writeDataPoint logs each point as one `analytics {json}` line.
const ANALYTICS_RECORDER = `export default function (env) {
  return {
    writeDataPoint(point) {
      console.log("analytics " + JSON.stringify({ dataset: env.DATASET, ...point }));
    },
  };
}`;

/** The parts of wrangler.toml the local stack honours. */
export function readWranglerConfig(file = path.join(ROOT, "wrangler.toml")) {
  const toml = parseToml(fs.readFileSync(file, "utf8"));
  return {
    name: toml.name,
    main: toml.main,
    compatibilityDate: toml.compatibility_date,
    compatibilityFlags: toml.compatibility_flags ?? [],
    kvNamespaces: Object.fromEntries((toml.kv_namespaces ?? []).map((ns) => [ns.binding, ns.id])),
    analyticsEngine: Object.fromEntries(
      (toml.analytics_engine_datasets ?? []).map((d) => [d.binding, d.dataset ?? d.binding]),
    ),
    vars: Object.fromEntries(Object.entries(toml.vars ?? {}).map(([k, v]) => [k, String(v)])),
  };
}

function pythonModules(baseDir, relDir = "") {
  const out = [];
  for (const entry of fs.readdirSync(path.join(baseDir, relDir), { withFileTypes: true })) {
    const rel = path.posix.join(relDir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__") out.push(...pythonModules(baseDir, rel));
    } else if (entry.name.endsWith(".py")) {
      out.push({
        type: "PythonModule",
        path: path.posix.join(VIRTUAL_ROOT, rel),
        contents: fs.readFileSync(path.join(baseDir, rel)),
      });
    }
  }
  return out;
}

/** Where `workers-runtime-sdk` is installed (uv's .venv unless EDGESHELF_SDK_DIR says). */
export function findSdkDir() {
  if (process.env.EDGESHELF_SDK_DIR) return process.env.EDGESHELF_SDK_DIR;
  const lib = path.join(ROOT, ".venv", "lib");
  for (const py of fs.existsSync(lib) ? fs.readdirSync(lib) : []) {
    const candidate = path.join(lib, py, "site-packages");
    if (fs.existsSync(path.join(candidate, "workers", "entrypoints.py"))) return candidate;
  }
  throw new Error("workers-runtime-sdk is not installed: run `uv sync` first");
}

function workerModules(runtime, srcDir, entry = "entry.py") {
  const own = pythonModules(srcDir);
  if (runtime === "current") {
    // The entry module must come first: Miniflare treats the first module as the main one.
    const main = own.find((m) => m.path === path.posix.join(VIRTUAL_ROOT, entry));
    return [main, ...own.filter((m) => m !== main)];
  }
  const adapterDir = path.join(HERE, "adapter");
  const adapter = pythonModules(adapterDir);
  const main = adapter.find((m) => m.path.endsWith("/edgeshelf_adapter_main.py"));
  if (entry !== "entry.py") {
    // The adapter imports `entry`; serve another file under that name.
    const alt = own.find((m) => m.path === path.posix.join(VIRTUAL_ROOT, entry));
    const rest = own.filter((m) => m !== alt && !m.path.endsWith("/entry.py"));
    own.length = 0;
    own.push({ ...alt, path: path.posix.join(VIRTUAL_ROOT, "entry.py") }, ...rest);
  }
  const sdk = pythonModules(path.join(findSdkDir(), "workers")).map((m) => ({
    ...m,
    path: m.path.replace(VIRTUAL_ROOT, `${VIRTUAL_ROOT}/workers`),
  }));
  return [main, ...adapter.filter((m) => m !== main), ...own, ...sdk];
}

/**
 * Miniflare options for a Python Worker whose `Default(WorkerEntrypoint)` lives in
 * `srcDir/entry` (the offline runtime gets the SDK and the adapter). Used for edgeshelf's own
 * Worker here and for the benchmark's Python passthrough Worker.
 */
export function pythonWorkerOptions({ name, srcDir, entry = "entry.py", runtime, compatibilityDate,
  compatibilityFlags = ["python_workers"], kvNamespaces = {}, bindings = {}, extra = {} }) {
  return {
    name,
    modulesRoot: VIRTUAL_ROOT,
    modules: workerModules(runtime, srcDir, entry),
    compatibilityDate: runtime === "current" ? compatibilityDate : "2024-11-01",
    compatibilityFlags,
    kvNamespaces,
    bindings,
    ...extra,
  };
}

async function loadMiniflare(runtime) {
  if (runtime === "current") {
    // wrangler@4 depends on the current Miniflare; no separate install is needed.
    const entry = path.join(ROOT, "node_modules", "wrangler", "node_modules", "miniflare");
    const pkg = JSON.parse(fs.readFileSync(path.join(entry, "package.json"), "utf8"));
    return import(pathToFileURL(path.join(entry, pkg.main)).href);
  }
  return import("miniflare");
}

/**
 * Start the stack. Returns {worker, api, origin, account_id, token, namespaces, runtime,
 * dispose(), mf, originServer}.
 */
export async function startStack({
  port = 8787,
  apiPort = 8788,
  originPort = 8789,
  host = "127.0.0.1",
  persist = undefined,
  runtime = process.env.EDGESHELF_RUNTIME || "offline",
  vars = {},
  token = process.env.EDGESHELF_LOCAL_TOKEN || crypto.randomBytes(20).toString("hex"),
  srcDir = path.join(ROOT, "src"),
  extraWorkers = [],
  logLevel = "info",
  analytics = false,
  kvFaults = false,
  apiDefaults = undefined,
  // Optional (stdout, stderr) => void for workerd's output; Miniflare prints it otherwise.
  handleRuntimeStdio = undefined,
  // false: no edgeshelf Worker of the stack's own (the benchmark brings its Workers in
  // `extraWorkers` and saves a Python start per stack).
  withWorker = true,
} = {}) {
  if (!RUNTIMES.includes(runtime)) {
    throw new Error(`--runtime must be one of ${RUNTIMES.join(", ")}, got ${runtime}`);
  }
  // On a Pyodide runtime the Worker runs in this process (./pyodide/host.mjs) and workerd keeps
  // the KV namespace, the local API and the other workers.
  const onPyodide = isPyodideRuntime(runtime);
  const config = readWranglerConfig();
  const originServer = await startOrigin({ host, port: originPort });
  const origin = `http://${host}:${originServer.port}`;
  const mfModule = await loadMiniflare(onPyodide ? "offline" : runtime);
  const { Miniflare, Log, LogLevel } = mfModule;
  let compatibilityDate = config.compatibilityDate;
  const newest = mfModule.supportedCompatibilityDate;
  if (runtime === "current" && newest && newest < compatibilityDate) {
    // As `wrangler dev` does: the installed workerd may predate wrangler.toml's date.
    console.warn(`compatibility date ${compatibilityDate} is newer than this workerd; using ${newest}`);
    compatibilityDate = newest;
  }
  const level = { quiet: LogLevel.WARN, info: LogLevel.INFO, debug: LogLevel.DEBUG }[logLevel];

  const persistOpts = persist
    ? {
        kvPersist: path.join(persist, "kv"),
        cachePersist: path.join(persist, "cache"),
      }
    : {};
  const namespaces = config.kvNamespaces;
  const datasets = { ...config.analyticsEngine };
  if (analytics && Object.keys(datasets).length === 0) datasets.EDGESHELF_METRICS = "edgeshelf";
  const analyticsWorkers = Object.keys(datasets).length && !onPyodide
    ? [
        {
          name: "analytics-recorder",
          modules: [{ type: "ESModule", path: "recorder.mjs", contents: ANALYTICS_RECORDER }],
        },
      ]
    : [];
  const wrappedBindings = Object.fromEntries(
    Object.entries(datasets).map(([binding, dataset]) => [
      binding,
      { scriptName: "analytics-recorder", bindings: { DATASET: dataset } },
    ]),
  );
  // With --kv-faults the Worker's KV bindings go through ./kvfaults.mjs (a wrapped binding
  // over the same namespace); without it they are the namespaces themselves.
  const faultyKv = kvFaults && !onPyodide;
  const kvFaultWorkers = faultyKv
    ? Object.entries(namespaces).map(([binding, id]) => ({
        name: `kv-faults-${binding.toLowerCase()}`,
        // A wrapped binding must be a single module: ./kvfaults.mjs and its default export.
        modules: [
          {
            type: "ESModule",
            path: "kvfaults.mjs",
            contents:
              fs.readFileSync(path.join(HERE, "kvfaults.mjs"), "utf8") +
              "\nexport default (env) => withFaults(env.INNER);\n",
          },
        ],
        kvNamespaces: { INNER: id },
      }))
    : [];
  if (faultyKv) {
    for (const binding of Object.keys(namespaces)) {
      wrappedBindings[binding] = { scriptName: `kv-faults-${binding.toLowerCase()}` };
    }
  }
  const workerVars = {
    ...config.vars,
    ORIGIN_URL: origin,
    DEBUG_HEADERS: "1",
    ...vars,
  };
  const workerdPython = onPyodide || !withWorker
    ? []
    : [
        pythonWorkerOptions({
          name: config.name,
          srcDir,
          runtime,
          compatibilityDate,
          compatibilityFlags: config.compatibilityFlags,
          kvNamespaces: faultyKv ? {} : namespaces,
          bindings: workerVars,
          extra: { routes: ["*"], wrappedBindings },
        }),
      ];
  const mf = new Miniflare({
    host,
    port: onPyodide ? 0 : port,
    log: new Log(level),
    cf: DEFAULT_CF,
    ...persistOpts,
    ...(handleRuntimeStdio ? { handleRuntimeStdio } : {}),
    workers: [
      ...workerdPython,
      {
        name: "cloudflare-api",
        modules: true,
        scriptPath: path.join(HERE, "cf-api.mjs"),
        compatibilityDate: "2024-11-01",
        kvNamespaces: namespaces,
        bindings: {
          CF_ACCOUNT_ID: LOCAL_ACCOUNT_ID,
          CF_API_TOKEN: token,
          CF_NAMESPACES: JSON.stringify(
            Object.fromEntries(Object.entries(namespaces).map(([b, id]) => [id, b])),
          ),
          ...(apiDefaults ? { CF_API_DEFAULTS: JSON.stringify(apiDefaults) } : {}),
        },
        unsafeDirectSockets: [{ host, port: apiPort }],
      },
      ...analyticsWorkers,
      ...kvFaultWorkers,
      ...extraWorkers,
    ],
  });
  let worker;
  let pyHost = null;
  try {
    worker = (await mf.ready).href.replace(/\/$/, "");
    if (onPyodide) {
      pyHost = await startPyodideWorker({
        runtime,
        srcDir,
        sdkDir: findSdkDir(),
        host,
        port,
        cf: DEFAULT_CF,
        env: {
          ...workerVars,
          ...Object.fromEntries(
            await Promise.all(
              Object.keys(namespaces).map(async (binding) => [
                binding,
                kvBinding(await mf.getKVNamespace(binding, "cloudflare-api"), kvFaults),
              ]),
            ),
          ),
          ...Object.fromEntries(
            Object.entries(datasets).map(([binding, dataset]) => [binding, analyticsRecorder(dataset)]),
          ),
        },
      });
      worker = pyHost.url;
    }
  } catch (err) {
    await mf.dispose().catch(() => {});
    await originServer.close();
    throw err;
  }
  const api = `http://${host}:${apiPort}/client/v4`;
  return {
    worker,
    api,
    origin,
    account_id: LOCAL_ACCOUNT_ID,
    token,
    namespaces,
    runtime,
    persist: persist ?? null,
    mf,
    originServer,
    vars: workerVars,
    async dispose() {
      await pyHost?.close();
      await mf.dispose();
      await originServer.close();
    },
  };
}

function parseCli(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: "8787" },
      "api-port": { type: "string", default: "8788" },
      "origin-port": { type: "string", default: "8789" },
      host: { type: "string", default: "127.0.0.1" },
      persist: { type: "string" },
      runtime: { type: "string" },
      var: { type: "string", multiple: true, default: [] },
      quiet: { type: "boolean", default: false },
      analytics: { type: "boolean", default: false },
      "kv-faults": { type: "boolean", default: false },
      "api-defaults": { type: "string" },
    },
  });
  const vars = {};
  for (const kv of values.var) {
    const eq = kv.indexOf("=");
    if (eq < 1) throw new Error(`--var takes KEY=VALUE, got ${kv}`);
    vars[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return {
    port: Number(values.port),
    apiPort: Number(values["api-port"]),
    originPort: Number(values["origin-port"]),
    host: values.host,
    persist: values.persist ? path.resolve(values.persist) : undefined,
    runtime: values.runtime ?? process.env.EDGESHELF_RUNTIME ?? "offline",
    vars,
    logLevel: values.quiet ? "quiet" : "info",
    analytics: values.analytics,
    kvFaults: values["kv-faults"],
    apiDefaults: values["api-defaults"] ? JSON.parse(values["api-defaults"]) : undefined,
  };
}

async function main() {
  const stack = await startStack(parseCli(process.argv.slice(2)));
  const ready = {
    worker: stack.worker,
    api: stack.api,
    origin: stack.origin,
    account_id: stack.account_id,
    token: stack.token,
    namespaces: stack.namespaces,
    runtime: stack.runtime,
    persist: stack.persist,
    pid: process.pid,
  };
  console.log(`ready ${JSON.stringify(ready)}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await stack.dispose();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`stack failed to start: ${err?.stack ?? err}`);
    process.exit(1);
  });
}
