// Cold starts, each in a fresh workerd process holding one Worker:
//  - process start -> first response, per target (the empty KV and cache make every first
//    request fetch the shell from the origin, for every target alike);
//  - the import cost of the `workers` SDK and of edgeshelf's package, measured with the
//    import-probe Worker: the wall time and workerd CPU of the request that imports a module,
//    less a plain request's. (workerd freezes clocks during synchronous work, so Python's own
//    clock cannot time an import: it is reported, but not used.)
import { Log, LogLevel, Miniflare } from "miniflare";
import { readWranglerConfig } from "../../scripts/local/stack.mjs";
import { startOrigin } from "../../scripts/local/origin.mjs";
import { CLK_TCK, cpuTicks, freePort, workerdPids } from "./proc.mjs";
import { targetOptions } from "./targets.mjs";

const HOST = "127.0.0.1";
const ORDER = ["js-floor", "js-peer", "js-naive", "py-floor", "edgeshelf"];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function startOne(id, bindings) {
  const port = await freePort();
  const t0 = performance.now();
  const mf = new Miniflare({
    host: HOST,
    port,
    log: new Log(LogLevel.WARN),
    cf: { country: "US", colo: "LCL" },
    handleRuntimeStdio: (out, err) => {
      out.resume();
      err.resume();
    },
    workers: [targetOptions(id, { bindings, name: `cold-${id}` })],
  });
  const url = (await mf.ready).href.replace(/\/$/, "");
  return { mf, url, t0, readyMs: performance.now() - t0 };
}

async function timed(url, headers = {}) {
  const t = performance.now();
  const r = await fetch(url, { headers });
  const body = await r.text();
  return { ms: performance.now() - t, status: r.status, body };
}

export async function measureColdStarts({ reps, log }) {
  const config = readWranglerConfig();
  const originPort = await freePort();
  const origin = await startOrigin({ host: HOST, port: originPort });
  const bindings = { ...config.vars, ORIGIN_URL: `http://${HOST}:${origin.port}`, DEBUG_HEADERS: "0" };
  const process_ = [];
  const imports = [];
  const versions = {};
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const id of ORDER) {
        const { mf, url, t0, readyMs } = await startOne(id, bindings);
        try {
          const first = await timed(`${url}/`);
          const firstMs = performance.now() - t0;
          const second = await timed(`${url}/`);
          if (first.status !== 200) throw new Error(`${id}: first response ${first.status}`);
          process_.push({
            rep, target: id, ready_ms: readyMs, first_response_ms: firstMs,
            first_request_ms: first.ms, second_request_ms: second.ms,
          });
          log(`cold ${id} rep ${rep}: ready ${readyMs.toFixed(0)} ms, first response ` +
            `${firstMs.toFixed(0)} ms (request ${first.ms.toFixed(0)} ms, next ${second.ms.toFixed(1)} ms)`);
        } finally {
          await mf.dispose();
        }
      }
      imports.push(...(await importProbe(rep, bindings, versions, log)));
    }
  } finally {
    await origin.close();
  }
  return { process: process_, imports, versions };
}

async function importProbe(rep, bindings, versions, log) {
  const { mf, url } = await startOne("py-import", bindings);
  const out = [];
  try {
    const pid = workerdPids()[0];
    const first = await timed(`${url}/noop`); // the isolate's first request: Python starts here
    out.push({ rep, step: "first request (runtime start)", wall_ms: first.ms });
    if (!versions.python) {
      const info = JSON.parse((await timed(`${url}/info`)).body);
      versions.python = info.python;
      versions.pyodide = info.pyodide;
    }
    for (const module of ["workers", "edgeshelf.handler"]) {
      const noops = [];
      for (let i = 0; i < 5; i++) noops.push((await timed(`${url}/noop`)).ms);
      const before = cpuTicks(pid);
      const res = await timed(`${url}/import/${module}`);
      const ticks = cpuTicks(pid) - before;
      if (res.status !== 200) throw new Error(`import ${module}: ${res.status} ${res.body}`);
      const info = JSON.parse(res.body);
      const noop = median(noops);
      out.push({
        rep, step: `import ${module}`, module, wall_ms: res.ms, noop_ms: noop,
        import_ms: res.ms - noop, workerd_cpu_ms: (ticks * 1000) / CLK_TCK,
        python_clock_ms: info.clock_ms, loaded: info.loaded,
      });
      log(`import ${module} rep ${rep}: ${(res.ms - noop).toFixed(1)} ms wall, ` +
        `${((ticks * 1000) / CLK_TCK).toFixed(0)} ms workerd CPU, ${info.loaded.length} modules`);
    }
  } finally {
    await mf.dispose();
  }
  return out;
}
