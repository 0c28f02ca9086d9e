// The KV latency model of the edge benchmark (bench/workers/kvlatency.mjs applies it): its
// parameters and their sources, the wrapped binding that gives every Worker of a run its KV
// namespace through the models, the switch between them, and the meter that counts each
// Worker's KV reads from the wrapper's lines on workerd's stdout.
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WRAPPER = path.join(HERE, "..", "workers", "kvlatency.mjs");
export const WRAPPER_NAME = "kv-latency";
const LINE_MARK = "edgeshelf.kvread ";
const CONTROL_KEY = "bench:kv-latency-mode";
const CONTROL_TTL_MS = 500;

// Where the default figures come from (PLATFORM.md, "Workers KV read latency in production").
export const SOURCES = [
  "Cloudflare, \"We made Workers KV up to 3x faster\" (blog.cloudflare.com/faster-workers-kv/, " +
    "2024-09-26): keys read often at a location are served from the KV Worker's memory or the " +
    "regional cache, under 1 ms to a few ms; about 0.03% of keys take about half of all reads.",
  "Cloudflare, \"How KV works\" (developers.cloudflare.com/kv/concepts/how-kv-works/): a key " +
    "read rarely at a location comes from central storage; negative lookups are cached for the " +
    "read's cacheTtl and billed like any read.",
  "Developer measurements (github.com/bajtos/cf-latencies): first reads about 160 ms, cold " +
    "reads 200-300 ms. Cloudflare publishes no hot/cold p50 or p99, so the defaults (cold: " +
    "median 30 ms, p95 150 ms, issue 14's \"tens of ms, hundreds in the tail\") are, if " +
    "anything, kind to a design that reads a per-user key on every page view.",
];

/**
 * The model as the wrapper reads it. Times in ms; a class whose p95 equals its median waits a
 * constant, one whose median is 0 does not wait. `rehotS` > 0: a per-user key read again within
 * that many seconds by the same isolate waits as a hot key (off by default, as in issue 14).
 */
export function kvModel({
  coldP50 = 30, coldP95 = 150, hotP50 = 1, hotP95 = 1, rehotS = 0, seed = 14, capMs = 10000,
} = {}) {
  for (const [name, v] of Object.entries({ coldP50, coldP95, hotP50, hotP95, rehotS, capMs })) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`KV model: ${name} must be a number >= 0`);
  }
  if (coldP95 < coldP50 || hotP95 < hotP50) throw new Error("KV model: p95 below the median");
  return {
    cold: { p50_ms: coldP50, p95_ms: coldP95 },
    hot: { p50_ms: hotP50, p95_ms: hotP95 },
    cold_prefixes: ["u:"],
    rehot_s: rehotS,
    seed: Math.trunc(seed) >>> 0,
    cap_ms: capMs,
    distribution: "log-normal from median and p95 per key class (constant when equal)",
  };
}

/** No injected wait at all: the wrapper only counts (the local, no-latency session runs). */
export const NO_LATENCY = kvModel({ coldP50: 0, coldP95: 0, hotP50: 0, hotP95: 0 });

/** The designated Worker of the wrapped binding: it holds the real namespaces. */
export function wrapperWorker(kvNamespaces) {
  return { name: WRAPPER_NAME, modules: true, scriptPath: WRAPPER, kvNamespaces };
}

/**
 * `wrappedBindings` giving a Worker each KV namespace of `kvNamespaces` through the wrapper,
 * with `modes` ({name: model}; the first is active until `setKvMode` names another).
 */
export function wrappedKv(kvNamespaces, worker, modes) {
  const MODEL = { modes, control_key: CONTROL_KEY, control_ttl_ms: CONTROL_TTL_MS };
  return Object.fromEntries(Object.keys(kvNamespaces).map((binding) => [binding, {
    scriptName: WRAPPER_NAME,
    bindings: { KV_BINDING: binding, WORKER: worker, MODEL },
  }]));
}

/** Make `mode` the active model of every Worker's wrapper (each sees it within 500 ms). */
export async function setKvMode(kv, mode) {
  await kv.put(CONTROL_KEY, mode);
  await new Promise((done) => setTimeout(done, CONTROL_TTL_MS + 100));
}

/**
 * Counts KV reads per Worker, model and key class from workerd's stdout (fed line by line), and
 * keeps the injected delays so the report can state the model that was actually applied.
 */
export class KvMeter {
  constructor() {
    this.counts = new Map(); // `${worker} ${mode}` -> {cold, hot}
    this.delays = new Map(); // mode -> {cold: [ms], hot: [ms]}
    this.lines = 0;
    this.lastLineAt = 0;
  }

  line(text) {
    const at = text.indexOf(LINE_MARK);
    if (at < 0) return;
    const [worker, mode, cls, ms] = text.slice(at + LINE_MARK.length).trim().split(" ");
    if (cls !== "cold" && cls !== "hot") return;
    const key = `${worker} ${mode}`;
    let c = this.counts.get(key);
    if (c === undefined) this.counts.set(key, (c = { cold: 0, hot: 0 }));
    c[cls] += 1;
    let d = this.delays.get(mode);
    if (d === undefined) this.delays.set(mode, (d = { cold: [], hot: [] }));
    d[cls].push(Number(ms));
    this.lines += 1;
    this.lastLineAt = performance.now();
  }

  /** A copy of one Worker's counts under one model. */
  of(worker, mode) {
    const c = this.counts.get(`${worker} ${mode}`);
    return { cold: c?.cold ?? 0, hot: c?.hot ?? 0 };
  }

  /** All of one Worker's reads, whatever the model (to check none went under another). */
  total(worker) {
    let n = 0;
    for (const [key, c] of this.counts) if (key.startsWith(`${worker} `)) n += c.cold + c.hot;
    return n;
  }

  /** Resolves once no counting line arrived for `quietMs` (workerd's stdout has caught up). */
  async settle(quietMs = 60, maxMs = 3000) {
    const started = performance.now();
    let seen = -1;
    while (performance.now() - started < maxMs) {
      if (seen === this.lines && performance.now() - this.lastLineAt >= quietMs) return;
      seen = this.lines;
      await new Promise((done) => setTimeout(done, quietMs / 3));
    }
  }
}

const quantile = (sorted, q) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;

/** Reads, median, p95 and p99 of the delays the wrapper injected under `mode`, per class. */
export function appliedDelays(meter, mode) {
  const d = meter.delays.get(mode) ?? { cold: [], hot: [] };
  return Object.fromEntries(Object.entries(d).map(([cls, xs]) => {
    const s = [...xs].sort((a, b) => a - b);
    return [cls, { reads: s.length, p50_ms: quantile(s, 0.5), p95_ms: quantile(s, 0.95),
      p99_ms: quantile(s, 0.99) }];
  }));
}
