// A/B tool for optimising the Worker: two source trees of edgeshelf side by side in one workerd
// (with the Python floor and the JS peer as references), alternating wrk cells, medians.
//
//   node bench/ab.mjs --b /tmp/variant/src [--b /tmp/other/src ...] [--a src] [--jsb peer.mjs ...] [--visitor known|cold] [--size 10k]
//                     [--conns 1] [--duration 3] [--reps 4]
//
// Prints one line per Worker: p50, req/s and workerd CPU per request. Not part of the report;
// a quick way to see whether a change to src/ pays before running the full benchmark.
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/local/stack.mjs";
import { fillCaches, measure, parity, startBench } from "./lib/scenario.mjs";

const { values } = parseArgs({
  options: {
    a: { type: "string", default: path.join(ROOT, "src") },
    b: { type: "string", multiple: true, default: [] },
    jsb: { type: "string", multiple: true, default: [] },
    visitor: { type: "string", default: "known" },
    size: { type: "string", default: "10k" },
    conns: { type: "string", default: "1" },
    duration: { type: "string", default: "3" },
    reps: { type: "string", default: "4" },
  },
});
const log = (...args) => console.error("[ab]", ...args);
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const targets = [
  { key: "py-floor", id: "py-floor", kind: "floor" },
  { key: "js-peer", id: "js-peer", kind: "read-path" },
  { key: "a", id: "edgeshelf", kind: "read-path", srcDir: path.resolve(values.a) },
  ...values.b.map((dir, i) => ({
    key: values.b.length > 1 ? `b${i + 1}` : "b", id: "edgeshelf", kind: "read-path",
    srcDir: path.resolve(dir),
  })),
  ...values.jsb.map((file, i) => ({
    key: `jsb${i + 1}`, id: "js-peer", kind: "read-path", srcDir: path.resolve(file),
  })),
];
const { stack, urls, workerdPid } = await startBench(targets, { log });
try {
  await fillCaches(stack.origin, targets, urls, values.size);
  for (const key of targets.filter((t) => t.srcDir).map((t) => t.key)) {
    const bad = (await parity(urls, values.size, key, "js-peer")).filter((p) => !p.ok);
    if (bad.length) log(`${key} differs from the JS peer:`, JSON.stringify(bad));
  }
  const conns = Number(values.conns);
  const results = Object.fromEntries(targets.map((t) => [t.key, []]));
  for (let rep = -1; rep < Number(values.reps); rep++) {
    const order = rep % 2 ? [...targets].reverse() : targets;
    for (const t of order) {
      const cell = { target: t.key, visitor: t.kind === "floor" ? "any" : values.visitor, size: values.size, conns };
      const r = await measure(cell, urls, workerdPid, rep < 0 ? 1 : Number(values.duration));
      if (rep >= 0) results[t.key].push(r);
    }
  }
  for (const t of targets) {
    const rs = results[t.key];
    console.log(
      `${`${t.key} ${t.srcDir ?? ""}`.padEnd(30)} p50 ${(median(rs.map((r) => r.p50_us)) / 1000).toFixed(3)} ms  ` +
      `req/s ${median(rs.map((r) => r.rps)).toFixed(0).padStart(5)}  ` +
      `cpu ${median(rs.map((r) => r.workerd_cpu_ms_per_req)).toFixed(3)} ms/req  ` +
      `(p50s ${rs.map((r) => (r.p50_us / 1000).toFixed(2)).join(" ")})`,
    );
  }
} finally {
  await stack.dispose();
}
