// The edge benchmark: edgeshelf's Worker against a JavaScript Worker with the same read path
// and against passthrough floors in both languages, side by side in ONE Miniflare (one workerd
// process), driven by wrk over loopback; then cold starts, each in a fresh workerd.
//
//   node bench/edge.mjs [--smoke] [--duration S] [--reps N] [--sizes 10k,100k,1m]
//                       [--conns 1,8] [--out docs/bench-edge.json] [--no-cold] [--label TEXT]
//
// Writes the raw results as JSON (bench/report.py turns them into docs/benchmarks.md and plots).
// Progress goes to stderr; workerd's own output (one log line per request) is drained unread.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { readWranglerConfig, ROOT, startStack } from "../scripts/local/stack.mjs";
import { measureColdStarts } from "./lib/coldstart.mjs";
import { cpuTicks, CLK_TCK, freePort, runWrk, workerdPids, wrkVersion } from "./lib/proc.mjs";
import { targetOptions, TARGETS } from "./lib/targets.mjs";

const HOST = "127.0.0.1";
const SIZES = { "10k": 10 * 1024, "100k": 100 * 1024, "1m": 1024 * 1024 };
const SHELL_VERSION = "bench1"; // the floors build their cache keys with the same version
const UID = "0d7c3b2a-1111-4222-8333-444455556666";
const COMMON_HEADERS = {
  "accept-language": "en-US,en;q=0.9",
  // Sets request.cf on a direct socket, as the edge would (country only matters to cold visitors).
  "mf-cf-blob": JSON.stringify({ country: "US", colo: "LCL" }),
};
const VISITORS = {
  known: { ...COMMON_HEADERS, cookie: `es_uid=${UID}; theme=dark` },
  cold: { ...COMMON_HEADERS },
};

const log = (...args) => console.error("[bench]", ...args);

function parseCli() {
  const { values } = parseArgs({
    options: {
      smoke: { type: "boolean", default: false },
      duration: { type: "string" },
      reps: { type: "string" },
      sizes: { type: "string" },
      conns: { type: "string" },
      out: { type: "string", default: path.join(ROOT, "docs", "bench-edge.json") },
      "no-cold": { type: "boolean", default: false },
      "cold-reps": { type: "string" },
      label: { type: "string", default: "" },
    },
  });
  const smoke = values.smoke;
  const opts = {
    smoke,
    durationS: Number(values.duration ?? (smoke ? 1 : 4)),
    reps: Number(values.reps ?? (smoke ? 1 : 3)),
    sizes: (values.sizes ?? (smoke ? "10k" : "10k,100k,1m")).split(","),
    conns: (values.conns ?? "1,8").split(",").map(Number),
    out: path.resolve(values.out),
    cold: !values["no-cold"],
    coldReps: Number(values["cold-reps"] ?? (smoke ? 1 : 5)),
    label: values.label,
    warmS: smoke ? 0 : 2, // seconds per cell; the smoke run skips warming up
  };
  for (const s of opts.sizes) if (!(s in SIZES)) throw new Error(`unknown size ${s}`);
  if (!Number.isInteger(opts.durationS) || opts.durationS < 1) {
    throw new Error("--duration is whole seconds (wrk's unit), at least 1");
  }
  return opts;
}

function machine() {
  const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpu_model: model.trim(),
    mem_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    os: fs.existsSync("/etc/os-release")
      ? (/^PRETTY_NAME="?([^"\n]+)/m.exec(fs.readFileSync("/etc/os-release", "utf8"))?.[1] ?? "")
      : os.type(),
  };
}

function pkgVersion(name) {
  const file = path.join(ROOT, "node_modules", name, "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

function gitInfo() {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT }).toString().trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "bench"], { cwd: ROOT })
      .toString().trim() !== "";
    return { commit, src_or_bench_dirty: dirty };
  } catch {
    return { commit: "unknown", src_or_bench_dirty: null };
  }
}

/** Drains workerd's stdout/stderr (a log line per request) and keeps stderr's tail. */
function makeStdio() {
  const state = { stdoutBytes: 0, stderrTail: "" };
  const handle = (stdout, stderr) => {
    stdout.on("data", (chunk) => {
      state.stdoutBytes += chunk.length;
    });
    stderr.on("data", (chunk) => {
      state.stderrTail = (state.stderrTail + chunk.toString()).slice(-4000);
    });
  };
  return { state, handle };
}

async function seed(kv) {
  const ids = Array.from({ length: 50 }, (_, i) => `v${String(i).padStart(3, "0")}-music`);
  const segment = (list) => JSON.stringify({ built_at: 1763900000, ids: list, version: 3 });
  await kv.put(`u:${UID}`, JSON.stringify({
    affinity_bucket: "music", country: "us", fv: 1, lang: "en", last_seen: 1763900000,
    recent_categories: ["music", "gaming"],
  }));
  await kv.put("seg:us-en-music:v3", segment(ids));
  await kv.put("seg:us-en-default:v3", segment(ids.map((id) => id.replace("music", "top"))));
  await kv.put("seg:global:v3", segment(ids.map((id) => id.replace("music", "global"))));
  for (const size of Object.keys(SIZES)) {
    await kv.put(`shell:b${size}`, JSON.stringify({ path: "/", version: SHELL_VERSION }));
  }
}

async function get(url, headers) {
  const r = await fetch(url, { headers });
  const body = await r.text();
  return { status: r.status, headers: [...r.headers], body };
}

const fromCache = (res, target) =>
  target.kind === "floor"
    ? res.headers.some(([k, v]) => k === "cf-cache-status" && v === "HIT")
    : res.headers.some(([k, v]) => k === "server-timing" && v.includes("desc=cache"));

/** Fill every target's cache with the shell of this size (the origin pads it). */
async function fillCaches(stack, urls, size) {
  const r = await fetch(`${stack.origin}/__origin/config`, {
    method: "POST",
    body: JSON.stringify({ mode: "ok", pad_bytes: SIZES[size] }),
  });
  if (!r.ok) throw new Error(`origin config failed: ${r.status}`);
  for (const target of TARGETS) {
    let res;
    for (let i = 0; i < 50; i++) {
      res = await get(`${urls[target.id]}/b${size}`, VISITORS.known);
      if (res.status === 200 && fromCache(res, target)) break;
      await new Promise((done) => setTimeout(done, 50));
    }
    if (!fromCache(res, target)) throw new Error(`${target.id} never served b${size} from cache`);
    if (res.body.length < SIZES[size] * 0.9) {
      throw new Error(`${target.id} served ${res.body.length} bytes for b${size}`);
    }
  }
}

function normalizedHeaders(res) {
  const skip = new Set(["date", "transfer-encoding", "content-length"]);
  return res.headers
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => [
      k,
      v.replace(/dur=\d+(\.\d+)?/g, "dur=N")
        .replace(/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/g, "UID"),
    ]);
}

/** edgeshelf and the JS peer must answer byte-for-byte alike, or the comparison means nothing. */
async function parity(urls, size) {
  const out = [];
  for (const [visitor, headers] of Object.entries(VISITORS)) {
    const py = await get(`${urls.edgeshelf}/b${size}`, headers);
    const js = await get(`${urls["js-peer"]}/b${size}`, headers);
    const diffs = [];
    if (py.status !== js.status) diffs.push(`status ${py.status} != ${js.status}`);
    const ph = JSON.stringify(normalizedHeaders(py));
    const jh = JSON.stringify(normalizedHeaders(js));
    if (ph !== jh) diffs.push(`headers ${ph} != ${jh}`);
    if (py.body !== js.body) {
      let at = 0;
      while (at < py.body.length && py.body[at] === js.body[at]) at++;
      diffs.push(`bodies differ at ${at}: ${JSON.stringify(py.body.slice(at, at + 80))} vs ` +
        JSON.stringify(js.body.slice(at, at + 80)));
    }
    if (!py.body.includes('id="edgeshelf-shelf"')) diffs.push("no shelf injected");
    out.push({ size, visitor, ok: diffs.length === 0, bytes: py.body.length, diffs });
  }
  return out;
}

/** The measured cells of one (size, connections) pair, rotated per repetition. */
function cellsFor(rep, size, conns) {
  const cells = [
    { target: "py-floor", visitor: "any" },
    { target: "js-floor", visitor: "any" },
    { target: "js-peer", visitor: "known" },
    { target: "edgeshelf", visitor: "known" },
    { target: "js-peer", visitor: "cold" },
    { target: "edgeshelf", visitor: "cold" },
  ].map((c) => ({ ...c, size, conns }));
  const shift = (rep * 5 + conns + size.length) % cells.length;
  return [...cells.slice(shift), ...cells.slice(0, shift)];
}

async function measure(cell, urls, workerdPid, durationS) {
  const headers = cell.visitor === "cold" ? VISITORS.cold : VISITORS.known;
  const before = cpuTicks(workerdPid);
  const nodeBefore = process.cpuUsage();
  const w = await runWrk({
    url: `${urls[cell.target]}/b${cell.size}`, connections: cell.conns, durationS, headers,
  });
  const ticks = cpuTicks(workerdPid) - before;
  const node = process.cpuUsage(nodeBefore);
  const seconds = w.duration_us / 1e6;
  return {
    ...cell,
    requests: w.requests,
    rps: w.requests / seconds,
    p50_us: w.p50_us,
    p90_us: w.p90_us,
    p99_us: w.p99_us,
    mean_us: w.mean_us,
    max_us: w.max_us,
    bytes_per_req: w.requests ? w.bytes / w.requests : 0,
    workerd_cpu_ms_per_req: w.requests ? (ticks * 1000) / CLK_TCK / w.requests : null,
    workerd_cpu_util: (ticks / CLK_TCK) / seconds,
    node_cpu_ms_per_req: w.requests ? (node.user + node.system) / 1000 / w.requests : null,
    loadavg_1m: os.loadavg()[0], // other work on the machine shows up here
    errors: w.connect_errors + w.read_errors + w.write_errors + w.timeouts,
    non2xx: w.non2xx,
  };
}

async function sideBySide(opts) {
  const config = readWranglerConfig();
  const [port, apiPort, originPort, ...sockets] = await Promise.all(
    Array.from({ length: 3 + TARGETS.length }, () => freePort()),
  );
  const vars = {
    ...config.vars,
    ORIGIN_URL: `http://${HOST}:${originPort}`,
    DEBUG_HEADERS: "0",
    PERSONALIZED_PATHS: ["/", ...Object.keys(SIZES).map((s) => `/b${s}`)].join(","),
  };
  const urls = {};
  const extraWorkers = TARGETS.map((t, i) => {
    urls[t.id] = `http://${HOST}:${sockets[i]}`;
    return targetOptions(t.id, { bindings: vars, socket: { host: HOST, port: sockets[i] } });
  });
  const stdio = makeStdio();
  log("starting one Miniflare with", TARGETS.map((t) => t.id).join(", "));
  const stack = await startStack({
    port, apiPort, originPort, host: HOST, vars, extraWorkers, logLevel: "quiet",
    handleRuntimeStdio: stdio.handle,
  });
  const result = { runs: [], parity: [], warmup_s: opts.warmS };
  try {
    const pids = workerdPids();
    if (pids.length !== 1) throw new Error(`expected one workerd process, found ${pids}`);
    const workerdPid = pids[0];
    await seed(await stack.mf.getKVNamespace("EDGESHELF_KV"));
    for (const size of opts.sizes) {
      log(`filling caches with the ${size} shell`);
      await fillCaches(stack, urls, size);
      result.parity.push(...(await parity(urls, size)));
    }
    const bad = result.parity.filter((p) => !p.ok);
    if (bad.length) log("PARITY MISMATCH", JSON.stringify(bad, null, 2));
    if (opts.warmS > 0) log("warming up");
    for (const size of opts.warmS > 0 ? opts.sizes : []) {
      for (const cell of cellsFor(0, size, 1)) {
        await measure(cell, urls, workerdPid, opts.warmS);
      }
    }
    const total = opts.reps * opts.sizes.length * opts.conns.length * 6;
    let done = 0;
    for (let rep = 0; rep < opts.reps; rep++) {
      for (const size of opts.sizes) {
        for (const conns of opts.conns) {
          for (const cell of cellsFor(rep, size, conns)) {
            const r = await measure(cell, urls, workerdPid, opts.durationS);
            result.runs.push({ rep, ...r });
            done++;
            log(`${done}/${total} rep ${rep} ${size} c${conns} ${cell.target}/${cell.visitor}: ` +
              `p50 ${(r.p50_us / 1000).toFixed(2)} ms, p99 ${(r.p99_us / 1000).toFixed(2)} ms, ` +
              `${r.rps.toFixed(0)} req/s, cpu ${r.workerd_cpu_ms_per_req?.toFixed(3)} ms/req` +
              (r.errors || r.non2xx ? `, ERRORS ${r.errors} non2xx ${r.non2xx}` : ""));
          }
        }
      }
    }
    result.workerd_stdout_bytes = stdio.state.stdoutBytes;
    if (stdio.state.stderrTail.trim()) result.workerd_stderr_tail = stdio.state.stderrTail;
  } finally {
    await stack.dispose();
  }
  return result;
}

async function main() {
  const opts = parseCli();
  const startedAt = new Date();
  const meta = {
    date: startedAt.toISOString(),
    label: opts.label,
    machine: machine(),
    versions: {
      workerd: pkgVersion("workerd"),
      miniflare: pkgVersion("miniflare"),
      node: process.version,
      wrk: await wrkVersion(),
    },
    git: gitInfo(),
    params: {
      smoke: opts.smoke, duration_s: opts.durationS, reps: opts.reps, sizes: opts.sizes,
      size_bytes: Object.fromEntries(opts.sizes.map((s) => [s, SIZES[s]])),
      conns: opts.conns, wrk_threads: 1, cold_reps: opts.coldReps,
    },
  };
  const edge = await sideBySide(opts);
  let cold = null;
  if (opts.cold) {
    log("cold starts");
    cold = await measureColdStarts({ reps: opts.coldReps, log });
    Object.assign(meta.versions, cold.versions);
  }
  meta.elapsed_s = Math.round((Date.now() - startedAt) / 100) / 10;
  fs.mkdirSync(path.dirname(opts.out), { recursive: true });
  fs.writeFileSync(opts.out, `${JSON.stringify({ meta, ...edge, cold_start: cold }, null, 1)}\n`);
  log(`wrote ${path.relative(process.cwd(), opts.out)} in ${meta.elapsed_s} s`);
  if (edge.parity.some((p) => !p.ok)) process.exitCode = 3;
}

main().catch((err) => {
  console.error(`edge benchmark failed: ${err?.stack ?? err}`);
  process.exit(1);
});
