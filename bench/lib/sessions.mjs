// Visitor sessions, the load of the edge benchmark's session cells: many visitors, each making
// several page views in a row and carrying the cookies it was given (a cookie jar per visitor),
// `conns` visitors at a time over keep-alive connections. The mix is configurable:
//  - new: no cookie at the first view (an ID is minted);
//  - profile: returning with an ID whose profile `u:<uid>` is published;
//  - noprofile: returning with an ID that has no profile.
// Returning visitors start with their ID only (their audience cookie, if they had one, expired
// since their last visit: the dearer case). A cell runs in four counted segments, so that every
// KV read the wrapper counts belongs to one kind of page view: the first views of new visitors,
// the first views of returning ones, then the later views of each (every visitor's views in
// order, on one connection at a time).
// The client is Node's http module (wrk cannot: its Lua sees one Set-Cookie header of the two a
// response sets). It costs the client more CPU per view than wrk, on the same machine as workerd,
// so session latencies compare Workers with each other and with the floors, not with wrk's.
import http from "node:http";
import { CLK_TCK, cpuTicks } from "./proc.mjs";
import { COMMON_HEADERS, PROFILE } from "./scenario.mjs";

export const KINDS = ["new", "profile", "noprofile"];
export const SEGMENTS = ["new-first", "returning-first", "new-later", "returning-later"];
const UID_LEAD = { profile: "a", noprofile: "b", warm: "c" };

/** `new=25,profile=50,noprofile=25` as shares summing to 1. */
export function parseMix(text) {
  const mix = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const item of text.split(",")) {
    const [kind, weight] = item.split("=");
    if (!KINDS.includes(kind) || !(Number(weight) >= 0)) {
      throw new Error(`--session-mix: "${item}" is not one of ${KINDS.join("|")}=<weight>`);
    }
    mix[kind] = Number(weight);
  }
  const total = KINDS.reduce((sum, k) => sum + mix[k], 0);
  if (!(total > 0)) throw new Error("--session-mix: the weights add up to nothing");
  return Object.fromEntries(KINDS.map((k) => [k, mix[k] / total]));
}

const uidFor = (kind, i) =>
  `${UID_LEAD[kind]}0000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;

/** `visitors` visitors split by the mix (largest remainder), each {kind, uid}. */
export function population(visitors, mix) {
  const exact = KINDS.map((k) => visitors * mix[k]);
  const counts = exact.map(Math.floor);
  const order = KINDS.map((_, i) => i).sort((a, b) => (exact[b] - counts[b]) - (exact[a] - counts[a]));
  for (let i = 0; counts.reduce((a, b) => a + b, 0) < visitors; i++) counts[order[i]] += 1;
  return KINDS.flatMap((kind, k) => Array.from({ length: counts[k] }, (_, i) => ({
    kind, uid: kind === "new" ? null : uidFor(kind, i),
  })));
}

/** A few visitors of every kind to warm each Worker up with (not measured). */
export function warmers(n) {
  return Array.from({ length: n }, (_, i) => ({
    kind: KINDS[i % KINDS.length], uid: i % KINDS.length === 0 ? null : uidFor("warm", i),
  }));
}

/** Publish the profiles of the population's (and the warmers') visitors that have one. */
export async function seedProfiles(kv, visitors) {
  const value = JSON.stringify(PROFILE);
  const keys = visitors.filter((v) => v.kind === "profile").map((v) => `u:${v.uid}`);
  for (let i = 0; i < keys.length; i += 50) {
    await Promise.all(keys.slice(i, i + 50).map((key) => kv.put(key, value)));
  }
}

/** A visitor's cookies: what it came with, then what each response set (Max-Age=0 deletes). */
class Jar {
  constructor(visitor) {
    this.cookies = new Map(visitor.uid ? [["es_uid", visitor.uid], ["theme", "dark"]] : []);
  }

  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  update(setCookies) {
    for (const line of setCookies ?? []) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      if (attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a))) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(eq + 1).trim());
    }
  }
}

/** One page view: resolves to {us, status, withAud} once the whole body has arrived. */
function view(agent, url, jar) {
  const cookie = jar.header();
  const withAud = jar.cookies.has("es_aud");
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const req = http.get(url, { agent, headers: { ...COMMON_HEADERS, ...(cookie ? { cookie } : {}) } },
      (res) => {
        jar.update(res.headers["set-cookie"]);
        res.resume(); // the body is read to its end and dropped
        res.on("end", () => resolve({
          us: Number(process.hrtime.bigint() - started) / 1000, status: res.statusCode, withAud,
        }));
        res.on("error", () => resolve({ us: null, status: 0, withAud }));
      });
    req.on("error", () => resolve({ us: null, status: 0, withAud }));
  });
}

/** `conns` visitors at a time, each running `fn(visitor)` to the end before taking the next. */
async function drive(visitors, conns, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: conns }, async () => {
    while (next < visitors.length) await fn(visitors[next++]);
  }));
}

const quantile = (sorted, q) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;

/** Latency summary (µs) of a list of page views. */
export function latencySummary(us) {
  const s = us.filter((x) => x !== null).sort((a, b) => a - b);
  return {
    p50_us: quantile(s, 0.5), p95_us: quantile(s, 0.95), p99_us: quantile(s, 0.99),
    max_us: s.length ? s[s.length - 1] : null,
    mean_us: s.length ? s.reduce((a, b) => a + b, 0) / s.length : null,
  };
}

/**
 * One session cell: the population's sessions against one Worker, segment by segment. `meter`
 * counts the Worker's KV reads (bench/lib/kvmodel.mjs) under `workerName` and `mode` (reads
 * under any other model would mean the switch had not reached the Worker: `kv_other_mode`).
 */
export async function sessionCell({
  url, workerName, mode, visitors, views, conns, meter, workerdPid,
}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const jars = new Map(visitors.map((v) => [v, new Jar(v)]));
  const returning = visitors.filter((v) => v.kind !== "new");
  const fresh = visitors.filter((v) => v.kind === "new");
  const plan = {
    "new-first": [fresh, 0, 1],
    "returning-first": [returning, 0, 1],
    "new-later": [fresh, 1, views],
    "returning-later": [returning, 1, views],
  };
  const segments = {};
  const all = [];
  try {
    for (const name of SEGMENTS) {
      const [who, from, to] = plan[name];
      const results = [];
      await meter.settle();
      const kvBefore = meter.of(workerName, mode);
      const totalBefore = meter.total(workerName);
      const ticksBefore = cpuTicks(workerdPid);
      const nodeBefore = process.cpuUsage();
      const t0 = performance.now();
      await drive(who, conns, async (visitor) => {
        for (let i = from; i < to; i++) results.push(await view(agent, url, jars.get(visitor)));
      });
      const seconds = (performance.now() - t0) / 1000;
      const ticks = cpuTicks(workerdPid) - ticksBefore;
      const node = process.cpuUsage(nodeBefore);
      await meter.settle();
      const kvAfter = meter.of(workerName, mode);
      const kv = { cold: kvAfter.cold - kvBefore.cold, hot: kvAfter.hot - kvBefore.hot };
      const us = results.map((r) => r.us);
      all.push(...us);
      segments[name] = {
        views: results.length,
        with_aud: results.filter((r) => r.withAud).length,
        seconds,
        workerd_cpu_ticks: ticks,
        node_cpu_ms: (node.user + node.system) / 1000,
        kv,
        kv_other_mode: meter.total(workerName) - totalBefore - kv.cold - kv.hot,
        errors: results.filter((r) => r.status === 0).length,
        non200: results.filter((r) => r.status !== 0 && r.status !== 200).length,
        ...latencySummary(us),
      };
    }
  } finally {
    agent.destroy();
  }
  const parts = Object.values(segments);
  const sum = (f) => parts.reduce((a, p) => a + f(p), 0);
  const viewsDone = sum((p) => p.views);
  const seconds = sum((p) => p.seconds);
  const reads = sum((p) => p.kv.cold + p.kv.hot);
  return {
    views: viewsDone,
    seconds,
    rps: seconds ? viewsDone / seconds : 0,
    workerd_cpu_ms_per_view: viewsDone ? (sum((p) => p.workerd_cpu_ticks) * 1000) / CLK_TCK / viewsDone : null,
    node_cpu_ms_per_view: viewsDone ? sum((p) => p.node_cpu_ms) / viewsDone : null,
    kv: { cold: sum((p) => p.kv.cold), hot: sum((p) => p.kv.hot) },
    kv_reads_per_1000: viewsDone ? (reads * 1000) / viewsDone : null,
    kv_other_mode: sum((p) => p.kv_other_mode),
    errors: sum((p) => p.errors),
    non200: sum((p) => p.non200),
    ...latencySummary(all),
    segments,
  };
}
