// The edge benchmark: edgeshelf's Worker against a JavaScript Worker with the same algorithm
// (bench/workers/jspeer.mjs), a naive JavaScript Worker (bench/workers/jsnaive.mjs: KV, cache
// match and HTMLRewriter per request) and passthrough floors in both languages, side by side in
// ONE Miniflare (one workerd process), driven by wrk over loopback; then cold starts, each in a
// fresh workerd.
//
//   node bench/edge.mjs [--smoke] [--duration S] [--reps N] [--sizes 10k,100k,1m]
//                       [--conns 1,8] [--out docs/bench-edge.json] [--no-cold] [--no-profile]
//                       [--label TEXT]
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
import { fillCaches, measure, parity, SIZES, startBench } from "./lib/scenario.mjs";
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
    profile: !values["no-profile"],
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

async function sideBySide(opts) {
  const targets = TARGETS.map((t) => ({ ...t, key: t.id }));
  const { stack, urls, workerdPid, stdio } = await startBench(targets, { log });
  const result = { runs: [], parity: [], parity_naive: [], warmup_s: opts.warmS };
  try {
    for (const size of opts.sizes) {
      log(`filling caches with the ${size} shell`);
      await fillCaches(stack.origin, targets, urls, size);
      result.parity.push(...(await parity(urls, size)));
      // The naive peer reports its own shell source (desc=cache): bodies must still match.
      result.parity_naive.push(
        ...(await parity(urls, size, "edgeshelf", "js-naive", { bodyOnly: true })),
      );
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
  fs.writeFileSync(opts.out, `${JSON.stringify({ meta, ...edge, cold_start: cold, profile }, null, 1)}\n`);
  log(`wrote ${path.relative(process.cwd(), opts.out)} in ${meta.elapsed_s} s`);
  if ([...edge.parity, ...edge.parity_naive].some((p) => !p.ok)) process.exitCode = 3;
}

main().catch((err) => {
  console.error(`edge benchmark failed: ${err?.stack ?? err}`);
  process.exit(1);
});
