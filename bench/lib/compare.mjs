// Several Workers side by side in one workerd, the same cell alternated over repetitions:
// the engine of bench/ab.mjs and bench/ablations.mjs.
import { audienceSetting, measure, parity, startFilled } from "./scenario.mjs";

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * `targets`: [{key, id, kind, srcDir?, parity?}]. Every target with a `srcDir` (or a `parity`)
 * is parity-checked against `parityWith` (a key) unless it sets `skipParity`; `parity: "body"`
 * compares status and bodies only (the naive JS peer). Resolves to
 * {key: {p50_ms, p99_ms, rps, cpu_ms, p50s_ms, parity}}.
 */
export async function compareTargets(targets, {
  size = "10k", visitor = "known", conns = 1, durationS = 3, reps = 4, parityWith = "js-peer", log,
}) {
  // The audience cookie as in the edge benchmark: off for every Worker while edgeshelf's has none.
  const audience = audienceSetting("auto");
  const { stack, urls, workerdPid } = await startFilled(targets, [size], audience, { log });
  try {
    const parityOk = {};
    const checked = (x) => (x.srcDir || x.parity) && !x.skipParity && x.key !== parityWith;
    for (const t of targets.filter(checked)) {
      const bodyOnly = t.parity === "body";
      const bad = (await parity(urls, size, t.key, parityWith, { bodyOnly })).filter((p) => !p.ok);
      parityOk[t.key] = bad.length === 0;
      if (bad.length) log(`${t.key} differs from ${parityWith}:`, JSON.stringify(bad).slice(0, 600));
    }
    const runs = Object.fromEntries(targets.map((t) => [t.key, []]));
    for (let rep = -1; rep < reps; rep++) {
      const order = rep % 2 ? [...targets].reverse() : targets;
      for (const t of order) {
        const cell = { target: t.key, visitor: t.kind === "floor" ? "any" : visitor, size, conns };
        const r = await measure(cell, urls, workerdPid, rep < 0 ? 1 : durationS);
        if (rep >= 0) runs[t.key].push(r);
      }
    }
    return Object.fromEntries(targets.map((t) => {
      const rs = runs[t.key];
      return [t.key, {
        p50_ms: median(rs.map((r) => r.p50_us)) / 1000,
        p99_ms: median(rs.map((r) => r.p99_us)) / 1000,
        rps: median(rs.map((r) => r.rps)),
        cpu_ms: median(rs.map((r) => r.workerd_cpu_ms_per_req)),
        p50s_ms: rs.map((r) => r.p50_us / 1000),
        parity: parityOk[t.key] ?? null,
      }];
    }));
  } finally {
    await stack.dispose();
  }
}
