// A/B tool for optimising the Worker: two source trees of edgeshelf side by side in one workerd
// (with the Python floor and the same-algorithm JS peer as references, and the naive JS peer
// with --naive), alternating wrk cells, medians. Every tree and --jsb script is checked against
// the JS peer first; a mismatch prints "[ab] <key> differs from js-peer: ...".
//
//   node bench/ab.mjs --b /tmp/variant/src [--b /tmp/other/src ...] [--a src] [--jsb peer.mjs ...] [--visitor known|cold] [--size 10k]
//                     [--conns 1] [--duration 3] [--reps 4] [--naive]
//
// Prints one line per Worker: p50, req/s and workerd CPU per request. Not part of the report;
// a quick way to see whether a change to src/ pays before running the full benchmark.
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/local/stack.mjs";
import { compareTargets } from "./lib/compare.mjs";

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
    naive: { type: "boolean", default: false },
  },
});
const log = (...args) => console.error("[ab]", ...args);

const targets = [
  { key: "py-floor", id: "py-floor", kind: "floor" },
  { key: "js-peer", id: "js-peer", kind: "read-path" },
  ...(values.naive ? [{ key: "js-naive", id: "js-naive", kind: "read-path", parity: "body" }] : []),
  { key: "a", id: "edgeshelf", kind: "read-path", srcDir: path.resolve(values.a) },
  ...values.b.map((dir, i) => ({
    key: values.b.length > 1 ? `b${i + 1}` : "b", id: "edgeshelf", kind: "read-path",
    srcDir: path.resolve(dir),
  })),
  ...values.jsb.map((file, i) => ({
    key: `jsb${i + 1}`, id: "js-peer", kind: "read-path", srcDir: path.resolve(file),
  })),
];
const results = await compareTargets(targets, {
  size: values.size, visitor: values.visitor, conns: Number(values.conns),
  durationS: Number(values.duration), reps: Number(values.reps), log,
});
for (const t of targets) {
  const r = results[t.key];
  console.log(
    `${`${t.key} ${t.srcDir ?? ""}`.padEnd(30)} p50 ${r.p50_ms.toFixed(3)} ms  p99 ${r.p99_ms.toFixed(2)} ms  ` +
    `req/s ${r.rps.toFixed(0).padStart(5)}  cpu ${r.cpu_ms.toFixed(3)} ms/req  ` +
    `(p50s ${r.p50s_ms.map((x) => x.toFixed(2)).join(" ")})`,
  );
}
