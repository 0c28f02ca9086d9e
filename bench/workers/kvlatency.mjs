// The edge benchmark's KV latency model, as a Miniflare wrapped binding: every Worker of a run
// gets its KV namespace through this module (the same file, the same model, the same seed), so
// the injected waits are the same for all of them. Local KV stays real; only the wait is added:
// each read starts at once and resolves no sooner than a delay drawn for its key's class.
//  - cold: keys starting with a prefix in cold_prefixes (per-user `u:<uid>`), read rarely at any
//    one location in production, so served from central storage;
//  - hot: everything else (segments, shell pointers), read by many visitors at one location.
// Each class draws from a log-normal with the given median and 95th percentile (equal: a
// constant; 0: no wait), from its own seeded generator, so every Worker sees the same sequence.
// With rehot_s > 0 a cold key read again within that many seconds by the same isolate waits as
// a hot one (production keeps a read key at the location for its cacheTtl).
// The run switches between models (e.g. none and the production model) without restarting: the
// benchmark writes the active mode's name to the real namespace under MODEL.control_key, and
// each isolate re-reads it (uncounted, unwaited) at most every control_ttl_ms.
// Every read prints one line `edgeshelf.kvread <worker> <mode> <class> <ms>`: the benchmark
// counts KV reads per Worker from these, outside the Worker's own log line.
// Env (inner bindings): KV_BINDING names the real namespace among them, WORKER labels the
// counting line, MODEL holds the modes (bench/lib/kvmodel.mjs builds it).

const Z95 = 1.6448536269514722; // the standard normal's 95th percentile

/**
 * mulberry32: a small seeded generator, uniform in [0, 1). The same as scripts/local/cf-api.mjs
 * uses: a wrapped binding must be a single module, so it cannot import that one.
 */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Delays in ms for one class: log-normal from its median and p95, capped. */
function sampler({ p50_ms: p50, p95_ms: p95 }, seed, capMs) {
  if (!(p50 > 0)) return () => 0;
  if (!(p95 > p50)) return () => p50;
  const sigma = Math.log(p95 / p50) / Z95;
  const uniform = seeded(seed);
  return () => {
    // Box-Muller; 1 - u keeps the logarithm finite.
    const u = 1 - uniform();
    const v = uniform();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    return Math.min(capMs, p50 * Math.exp(sigma * z));
  };
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

export default function (env) {
  const inner = env[env.KV_BINDING];
  const { modes, control_key: controlKey, control_ttl_ms: controlTtlMs } = env.MODEL;
  const worker = String(env.WORKER);
  const delays = Object.fromEntries(Object.entries(modes).map(([name, m], i) => [name, {
    cold: sampler(m.cold, m.seed + 2 * i, m.cap_ms),
    hot: sampler(m.hot, m.seed + 2 * i + 1, m.cap_ms),
  }]));
  const lastRead = new Map(); // cold key -> when this isolate last read it (rehot_s > 0 only)
  let mode = null;
  let checkedAt = -Infinity;

  async function activeMode() {
    const now = Date.now();
    if (now - checkedAt >= controlTtlMs) {
      const name = await inner.get(controlKey);
      mode = typeof name === "string" && name in modes ? name : Object.keys(modes)[0];
      checkedAt = now;
    }
    return mode;
  }

  function classOf(key, m) {
    const text = String(key);
    if (!m.cold_prefixes.some((prefix) => text.startsWith(prefix))) return "hot";
    if (m.rehot_s > 0) {
      const now = Date.now();
      const last = lastRead.get(text);
      if (lastRead.size > 100000) lastRead.clear(); // a bound, far above any run's visitors
      lastRead.set(text, now);
      if (last !== undefined && now - last < m.rehot_s * 1000) return "hot";
    }
    return "cold";
  }

  async function read(method, key, options) {
    const name = await activeMode();
    const cls = classOf(key, modes[name]);
    const ms = delays[name][cls]();
    console.log(`edgeshelf.kvread ${worker} ${name} ${cls} ${ms.toFixed(3)}`);
    const reading = inner[method](key, options);
    reading.catch(() => {}); // a failed read is reported to the caller after the wait, not here
    if (ms > 0) await sleep(ms);
    return reading;
  }

  return {
    get: (key, options) => read("get", key, options),
    getWithMetadata: (key, options) => read("getWithMetadata", key, options),
    put: (...args) => inner.put(...args),
    delete: (...args) => inner.delete(...args),
    list: (...args) => inner.list(...args),
  };
}
