// The edge benchmark: edgeshelf's Worker against a JavaScript Worker with the same algorithm
// (bench/workers/jspeer.mjs), a naive JavaScript Worker (bench/workers/jsnaive.mjs: KV, cache
// match and HTMLRewriter per request) and passthrough floors in both languages, side by side in
// ONE Miniflare (one workerd process), driven by wrk over loopback; then visitor sessions
// (bench/lib/sessions.mjs) in a second Miniflare where every Worker reads KV through the same
// wrapper, once without injected latency and once under the production KV latency model
// (bench/lib/kvmodel.mjs); then cold starts, each in a fresh workerd.
//
//   node bench/edge.mjs [--smoke] [--duration S] [--reps N] [--sizes 10k,100k,1m]
//                       [--conns 1,8] [--out docs/bench-edge.json] [--no-cold] [--no-profile]
//                       [--label TEXT] [--audience-ttl auto|SECONDS]
//                       [--no-sessions] [--session-sizes 10k,1m] [--session-visitors N]
//                       [--session-views N] [--session-conns N]
//                       [--session-mix new=25,profile=50,noprofile=25]
//                       [--kv-cold-p50 MS] [--kv-cold-p95 MS] [--kv-hot-p50 MS] [--kv-hot-p95 MS]
//                       [--kv-rehot-s S] [--kv-seed N]
//
// --audience-ttl sets AUDIENCE_TTL for every Worker alike. `auto` (the default) takes
// wrangler.toml's value (the spec's 3600 when it has none), unless edgeshelf's Worker does not
// issue the audience cookie: then every Worker runs with 0 (the design before issue 14), so the
// same-algorithm peer still answers like edgeshelf, and the report says so.
//
// Writes the raw results as JSON (bench/report.py turns them into docs/benchmarks.md and plots).
// Progress goes to stderr; workerd's own output (one log line per request) is drained unread.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/local/stack.mjs";
import { measureColdStarts } from "./lib/coldstart.mjs";
import { measureFfi } from "./lib/ffi.mjs";
import { wrkVersion } from "./lib/proc.mjs";
import { appliedDelays, kvModel, NO_LATENCY, setKvMode, SOURCES } from "./lib/kvmodel.mjs";
import {
  audienceSetting, measure, parity, SIZES, startFilled,
} from "./lib/scenario.mjs";
import {
  parseMix, population, seedProfiles, sessionCell, warmers,
} from "./lib/sessions.mjs";
import { TARGETS } from "./lib/targets.mjs";

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
      "no-profile": { type: "boolean", default: false },
      "cold-reps": { type: "string" },
      label: { type: "string", default: "" },
      "audience-ttl": { type: "string", default: "auto" },
      "no-sessions": { type: "boolean", default: false },
      "session-sizes": { type: "string" },
      "session-visitors": { type: "string" },
      "session-views": { type: "string" },
      "session-conns": { type: "string" },
      "session-mix": { type: "string", default: "new=25,profile=50,noprofile=25" },
      "kv-cold-p50": { type: "string", default: "30" },
      "kv-cold-p95": { type: "string", default: "150" },
      "kv-hot-p50": { type: "string", default: "1" },
      "kv-hot-p95": { type: "string", default: "1" },
      "kv-rehot-s": { type: "string", default: "0" },
      "kv-seed": { type: "string", default: "14" },
    },
  });
  const smoke = values.smoke;
  const count = (name, dflt, min = 1) => {
    const v = Number(values[name] ?? dflt);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${name} is a whole number >= ${min}`);
    return v;
  };
  const opts = {
    smoke,
    durationS: Number(values.duration ?? (smoke ? 1 : 4)),
    reps: Number(values.reps ?? (smoke ? 1 : 3)),
    sizes: (values.sizes ?? (smoke ? "10k" : "10k,100k,1m")).split(","),
    conns: (values.conns ?? "1,8").split(",").map(Number),
    out: path.resolve(values.out),
    cold: !values["no-cold"],
    profile: !values["no-profile"],
    coldReps: Number(values["cold-reps"] ?? (smoke ? 1 : 5)),
    label: values.label,
    warmS: smoke ? 0 : 2, // seconds per cell; the smoke run skips warming up
    audienceTtl: values["audience-ttl"] === "auto" ? "auto" : count("audience-ttl", 0, 0),
    sessions: !values["no-sessions"],
    sessionSizes: (values["session-sizes"] ?? (smoke ? "10k" : "10k,1m")).split(","),
    sessionVisitors: count("session-visitors", smoke ? 12 : 120),
    sessionViews: count("session-views", smoke ? 3 : 8),
    sessionConns: count("session-conns", 4),
    sessionMix: parseMix(values["session-mix"]),
    kvModel: kvModel({
      coldP50: Number(values["kv-cold-p50"]), coldP95: Number(values["kv-cold-p95"]),
      hotP50: Number(values["kv-hot-p50"]), hotP95: Number(values["kv-hot-p95"]),
      rehotS: Number(values["kv-rehot-s"]), seed: Number(values["kv-seed"]),
    }),
  };
  for (const s of [...opts.sizes, ...opts.sessionSizes]) {
    if (!(s in SIZES)) throw new Error(`unknown size ${s}`);
  }
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

/** The measured cells of one (size, connections) pair, rotated per repetition. */
function cellsFor(rep, size, conns) {
  const cells = [
    { target: "py-floor", visitor: "any" },
    { target: "js-floor", visitor: "any" },
    { target: "js-peer", visitor: "known" },
    { target: "js-naive", visitor: "known" },
    { target: "edgeshelf", visitor: "known" },
    { target: "js-peer", visitor: "cold" },
    { target: "js-naive", visitor: "cold" },
    { target: "edgeshelf", visitor: "cold" },
  ].map((c) => ({ ...c, size, conns }));
  const shift = (rep * 5 + conns + size.length) % cells.length;
  return [...cells.slice(shift), ...cells.slice(0, shift)];
}

async function sideBySide(opts, audience) {
  const targets = TARGETS.map((t) => ({ ...t, key: t.id }));
  const { stack, urls, workerdPid, stdio } = await startFilled(targets, opts.sizes, audience,
    { log });
  const result = { runs: [], parity: [], parity_naive: [], warmup_s: opts.warmS };
  try {
    for (const size of opts.sizes) {
      result.parity.push(...(await parity(urls, size, "edgeshelf", "js-peer")));
      // The naive peer reports its own shell source (desc=cache): bodies must still match.
      result.parity_naive.push(...(await parity(urls, size, "edgeshelf", "js-naive",
        { bodyOnly: true })));
    }
    const bad = [...result.parity, ...result.parity_naive].filter((p) => !p.ok);
    if (bad.length) log("PARITY MISMATCH", JSON.stringify(bad, null, 2));
    if (opts.warmS > 0) log("warming up");
    for (const size of opts.warmS > 0 ? opts.sizes : []) {
      for (const cell of cellsFor(0, size, 1)) {
        await measure(cell, urls, workerdPid, opts.warmS);
      }
    }
    const total = opts.reps * opts.sizes.length * opts.conns.length * cellsFor(0, "", 0).length;
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

/**
 * Visitor sessions against every Worker, all of them reading KV through the latency wrapper, in
 * one Miniflare of their own: under each of `modes` ({name: model}) in turn.
 */
async function sessionPhase(opts, modes, audience) {
  const targets = TARGETS.map((t) => ({ ...t, key: t.id }));
  const sizes = opts.sessionSizes;
  const { stack, urls, workerdPid, stdio } = await startFilled(targets, sizes, audience,
    { log, kvModes: modes });
  const meter = stdio.state.meter;
  const visitors = population(opts.sessionVisitors, opts.sessionMix);
  const warm = warmers(opts.sessionConns * 3);
  const out = {};
  const order = targets.map((t) => t.key);
  const cell = (mode, target, size, who) => sessionCell({
    url: `${urls[target]}/b${size}`, // the path names the shell
    workerName: `bench-${target}`, mode, visitors: who, views: opts.sessionViews,
    conns: opts.sessionConns, meter, workerdPid,
  });
  try {
    const kv = await stack.mf.getKVNamespace("EDGESHELF_KV");
    await seedProfiles(kv, [...visitors, ...warm]);
    for (const [mode, model] of Object.entries(modes)) {
      log(`visitor sessions, KV latency: ${mode}`);
      await setKvMode(kv, mode);
      const phase = { model, runs: [], parity: [] };
      for (const size of sizes) {
        phase.parity.push(...(await parity(urls, size, "edgeshelf", "js-peer")));
      }
      const bad = phase.parity.filter((p) => !p.ok);
      if (bad.length) log("PARITY MISMATCH", JSON.stringify(bad, null, 2));
      for (const size of opts.smoke ? [] : sizes) {
        for (const target of order) await cell(mode, target, size, warm); // warming up
      }
      for (let rep = 0; rep < opts.reps; rep++) {
        for (const size of sizes) {
          const shift = (rep * 2 + size.length) % order.length;
          for (const target of [...order.slice(shift), ...order.slice(0, shift)]) {
            const r = await cell(mode, target, size, visitors);
            phase.runs.push({ rep, mode, size, target, conns: opts.sessionConns, ...r });
            log(`sessions ${mode} rep ${rep} ${size} ${target}: ${r.views} views, ` +
              `p50 ${(r.p50_us / 1000).toFixed(2)} ms, p95 ${(r.p95_us / 1000).toFixed(2)} ms, ` +
              `p99 ${(r.p99_us / 1000).toFixed(2)} ms, ${r.rps.toFixed(0)} views/s, ` +
              `cpu ${r.workerd_cpu_ms_per_view?.toFixed(3)} ms/view, ` +
              `KV ${r.kv_reads_per_1000?.toFixed(0)}/1000 views (cold ${r.kv.cold}, ` +
              `hot ${r.kv.hot})` +
              (r.errors || r.non200 || r.kv_other_mode
                ? `, ERRORS ${r.errors} non200 ${r.non200} other-mode reads ${r.kv_other_mode}`
                : ""));
          }
        }
      }
      phase.applied = appliedDelays(meter, mode);
      out[mode] = phase;
    }
    if (stdio.state.stderrTail.trim()) out.workerd_stderr_tail = stdio.state.stderrTail;
  } finally {
    await stack.dispose();
  }
  return out;
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
  const audience = audienceSetting(opts.audienceTtl);
  const edge = await sideBySide(opts, audience);
  let sessions = null;
  if (opts.sessions) {
    sessions = {
      params: {
        sizes: opts.sessionSizes, visitors: opts.sessionVisitors, views: opts.sessionViews,
        conns: opts.sessionConns, mix: opts.sessionMix, reps: opts.reps,
      },
      sources: SOURCES,
      modes: await sessionPhase(opts, { none: NO_LATENCY, model: opts.kvModel }, audience),
    };
  }
  meta.audience = audience;
  let cold = null;
  if (opts.cold) {
    log("cold starts");
    cold = await measureColdStarts({ reps: opts.coldReps, log });
    Object.assign(meta.versions, cold.versions);
  }
  let profile = null;
  if (opts.profile) {
    log("FFI cost probe");
    const ffi = await measureFfi({
      reps: opts.smoke ? 1 : 5, scale: opts.smoke ? 0.05 : 1, bindings: {}, log,
    });
    profile = { ffi };
  }
  meta.elapsed_s = Math.round((Date.now() - startedAt) / 100) / 10;
  fs.mkdirSync(path.dirname(opts.out), { recursive: true });
  const out = { meta, ...edge, sessions, cold_start: cold, profile };
  fs.writeFileSync(opts.out, `${JSON.stringify(out, null, 1)}\n`);
  log(`wrote ${path.relative(process.cwd(), opts.out)} in ${meta.elapsed_s} s`);
  const sessionParity = Object.values(sessions?.modes ?? {}).flatMap((m) => m.parity ?? []);
  if ([...edge.parity, ...edge.parity_naive, ...sessionParity].some((p) => !p.ok)) {
    process.exitCode = 3;
  }
}

main().catch((err) => {
  console.error(`edge benchmark failed: ${err?.stack ?? err}`);
  process.exit(1);
});
