// Parity of the JavaScript peers with edgeshelf's Worker on every shell source: the version's
// copy in KV (the edgeshelf.shell/1 envelope with its headers, plain HTML, an unusable one), the
// origin (a pointer without a copy, no pointer at all), the Cache API, isolate memory, and a KV
// error reading the pointer (before and after a good read). The edge benchmark's parity check
// (bench/lib/scenario.mjs) sees only its steady state; this one walks each source.
//
//   node bench/peerparity.mjs [--out FILE]
//
// edgeshelf, the same-algorithm peer and the naive peer run side by side in one workerd, their KV
// reads through the local stack's fault wrapper, under three configurations: the defaults
// (isolate memory on), no isolate memory (SHELL_POINTER_TTL=0, SEGMENT_MEMO_TTL=0: the cache
// and the pointer are read on every request) with NO_POINTER_SHELL_TTL=30, and the same with
// NO_POINTER_SHELL_TTL=0. Each scenario's requests go to the three Workers in lockstep; at each
// step edgeshelf's answer must show what the scenario names (source, page, headers kept and
// dropped), the same-algorithm peer's must equal it byte for byte (headers normalised), the
// naive peer's must too except Server-Timing (it reports its own source), and the shell each
// Worker put in the Cache API must carry the same headers and lifetime.
// The visitor sends Sec-GPC: 1 and no cookie, so no Worker sets a cookie whatever AUDIENCE_TTL
// is: these scenarios are about the shell. Prints the results as JSON (to --out, else stdout);
// exits 3 when any check failed.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { SITE_HEADERS } from "../scripts/local/origin.mjs";
import { COMMON_HEADERS, normalizedHeaders, startBench } from "./lib/scenario.mjs";
import { peerRules } from "./lib/targets.mjs";

const log = (...args) => console.error("[peer-parity]", ...args);
const TARGETS = [
  { key: "edgeshelf", id: "edgeshelf" },
  { key: "js-peer", id: "js-peer" },
  { key: "js-naive", id: "js-naive" },
];
const VISITOR = { ...COMMON_HEADERS, "sec-gpc": "1" };
const FAULTS_KEY = "__edgeshelf:kv-faults"; // scripts/local/kvfaults.mjs
const RULES = peerRules();
const YEAR = RULES.cache_control_pinned;
const unpinned = (ttl) => RULES.cache_control_unpinned.replace("{ttl}", String(ttl));

const page = (marker) =>
  `<!doctype html><html><head><title>${marker}</title></head><body><main>` +
  `<div data-edgeshelf-slot data-edgeshelf-render="cards"><p>default ${marker}</p></div>` +
  "</main></body></html>";
const envelope = (html, headers) =>
  JSON.stringify({ format: RULES.shell_copy_format, headers, html });
const pointer = (version) => JSON.stringify({ path: "/", version });

// What the origin stand-in sends with its shell that must reach the page, and what must not.
const ORIGIN_KEPT = { ...SITE_HEADERS, "x-origin": "stand-in" };
const ORIGIN_DROPPED = ["etag", "last-modified", "set-cookie"];

/**
 * Scenarios, each on a shell of its own: route `/__shell/<name>` (a path the origin stand-in
 * answers with its shell, as it must when no pointer names another), shell `__shell_<name>`.
 * `pointer`: the version its pointer names (none: no pointer); `copy`: that version's copy in
 * KV; `failing`: the pointer's reads fail from the `failing`-th request on; `version`: the one
 * served (its Cache API key); `first`: the source of the first request (Server-Timing's desc;
 * later ones come from isolate memory or the cache when the configuration keeps them);
 * `expect`: what edgeshelf's every answer must show: the copy's `marker` or the `origin`'s page,
 * headers `kept` ({name: value}) and `dropped`, and the `cached` shell's Cache-Control for a
 * NO_POINTER_SHELL_TTL.
 */
const FROM_ORIGIN = { origin: true, kept: ORIGIN_KEPT, dropped: ORIGIN_DROPPED, cached: unpinned };
const SCENARIOS = {
  // A published version with its copy: the copy's page and headers, filtered as on write.
  copy: {
    pointer: "c1",
    copy: envelope(page("COPY-C1"), [
      ["Content-Security-Policy", "default-src 'none'"], ["x-copy", "c1"],
      ["link", "</a.css>; rel=preload"], ["set-cookie", "copy=1"], ["etag", '"c1"'],
      ["bad name", "x"], ["x-split", "a\r\nb"], ["x-not-text", 1],
    ]),
    version: "c1",
    first: "kv-copy",
    expect: {
      marker: "COPY-C1",
      kept: {
        "content-security-policy": "default-src 'none'", "x-copy": "c1",
        link: "</a.css>; rel=preload",
      },
      dropped: ["set-cookie", "etag", "x-split", "x-not-text", "x-origin"],
      cached: () => YEAR,
    },
  },
  // A copy written before headers were kept: plain HTML, no headers of its own.
  plain: {
    pointer: "p1",
    copy: page("PLAIN-P1"),
    version: "p1",
    first: "kv-copy",
    expect: {
      marker: "PLAIN-P1", kept: {}, dropped: ["content-security-policy", "x-origin"],
      cached: () => YEAR,
    },
  },
  // A pointer published without a copy: the origin's page, briefly cached.
  nocopy: { pointer: "n1", version: "n1", first: "origin", expect: FROM_ORIGIN },
  // No pointer at all: the origin's page, briefly cached.
  nopointer: { version: "0", first: "origin", expect: FROM_ORIGIN },
  // A copy that is no copy: the origin's page.
  badcopy: {
    pointer: "b1",
    copy: JSON.stringify({ format: "edgeshelf.shell/0", html: page("BAD-B1") }),
    version: "b1",
    first: "origin",
    expect: FROM_ORIGIN,
  },
  // The pointer read fails after a good one: the version read before is kept.
  kvfail: {
    pointer: "k1",
    copy: envelope(page("KV-K1"), [["x-copy", "k1"]]),
    failing: 2,
    version: "k1",
    first: "kv-copy",
    expect: { marker: "KV-K1", kept: { "x-copy": "k1" }, dropped: ["x-origin"], cached: () => YEAR },
  },
  // The pointer read fails with no earlier pointer: the origin's page.
  kvfirst: {
    pointer: "k2",
    copy: envelope(page("KV-K2"), []),
    failing: 1,
    version: "0",
    first: "origin",
    expect: FROM_ORIGIN,
  },
};
const shellOf = (name) => `__shell_${name}`;
const routeOf = (name) => `/__shell/${name}`;

const CONFIGS = {
  memo: { vars: {}, memo: true, noPointerTtl: RULES.no_pointer_shell_ttl },
  "no-memo": {
    vars: { SHELL_POINTER_TTL: "0", SEGMENT_MEMO_TTL: "0", NO_POINTER_SHELL_TTL: "30" },
    memo: false, noPointerTtl: 30,
  },
  "no-memo-no-cache": {
    vars: { SHELL_POINTER_TTL: "0", SEGMENT_MEMO_TTL: "0", NO_POINTER_SHELL_TTL: "0" },
    memo: false, noPointerTtl: 0,
  },
};

async function get(url) {
  const r = await fetch(url, { headers: VISITOR });
  return { status: r.status, headers: [...r.headers], body: await r.text() };
}

const header = (res, name) => res.headers.find(([k]) => k === name)?.[1];
const sourceOf = (res) => /desc=([a-z-]+)/.exec(header(res, "server-timing") ?? "")?.[1];

/** The shell a Worker put in the Cache API for (name, version): its headers, or null. */
async function cachedShell(caches, url, name, version, wait) {
  const key = `${url}/__edgeshelf/shell/${name}/${version}`;
  for (let i = 0; i < (wait ? 40 : 1); i++) { // the put runs after the answer (waitUntil)
    const hit = await caches.default.match(key);
    if (hit) {
      await hit.arrayBuffer();
      return [...hit.headers].filter(([k]) => !["date", "content-length", "cf-cache-status"].includes(k));
    }
    await new Promise((done) => setTimeout(done, 25));
  }
  return null;
}

function expectationProblems(res, spec, source, originBody) {
  const out = [];
  const { expect } = spec;
  if (res.status !== 200) out.push(`status ${res.status}`);
  if (sourceOf(res) !== source) out.push(`source ${sourceOf(res)}, expected ${source}`);
  if (expect.marker !== undefined && !res.body.includes(expect.marker)) {
    out.push(`the page is not the copy ${expect.marker}`);
  }
  if (expect.origin && !res.body.includes(originBody)) out.push("the page is not the origin's");
  for (const [name, value] of Object.entries(expect.kept)) {
    if (header(res, name) !== value) out.push(`${name}: ${header(res, name)}, expected ${value}`);
  }
  for (const name of expect.dropped) {
    if (header(res, name) !== undefined) out.push(`${name} should have been dropped`);
  }
  if (!res.body.includes('id="edgeshelf-shelf"')) out.push("no shelf injected");
  return out;
}

function compare(py, other, { skipTiming }) {
  const diffs = [];
  if (py.status !== other.status) diffs.push(`status ${py.status} != ${other.status}`);
  const norm = (res) => normalizedHeaders(res).filter(([k]) => !skipTiming || k !== "server-timing");
  const ph = JSON.stringify(norm(py));
  const oh = JSON.stringify(norm(other));
  if (ph !== oh) diffs.push(`headers ${ph} != ${oh}`);
  if (py.body !== other.body) {
    let at = 0;
    while (at < py.body.length && py.body[at] === other.body[at]) at++;
    diffs.push(`bodies differ at ${at}: ${JSON.stringify(py.body.slice(at, at + 80))} vs ` +
      JSON.stringify(other.body.slice(at, at + 80)));
  }
  return diffs;
}

async function runConfig(configName, config) {
  const { stack, urls } = await startBench(TARGETS, {
    log, kvFaults: true,
    vars: { PERSONALIZED_PATHS: Object.keys(SCENARIOS).map(routeOf).join(","), ...config.vars },
  });
  const results = [];
  try {
    const kv = await stack.mf.getKVNamespace("EDGESHELF_KV");
    const caches = await stack.mf.getCaches();
    const originBody = (await (await fetch(`${stack.origin}/`)).text()).slice(0, 200);
    const failing = [];
    const setFaults = () => kv.put(FAULTS_KEY, JSON.stringify({ keys: failing }));
    for (const [name, spec] of Object.entries(SCENARIOS)) {
      const key = `shell:${shellOf(name)}`;
      if (spec.pointer !== undefined) await kv.put(key, pointer(spec.pointer));
      if (spec.copy !== undefined) await kv.put(`${key}:${spec.pointer}`, spec.copy);
    }
    for (const [name, spec] of Object.entries(SCENARIOS)) {
      const cached = spec.expect.cached(config.noPointerTtl);
      const willCache = cached === YEAR || config.noPointerTtl > 0;
      for (const step of [1, 2, 3]) {
        if (step === spec.failing) {
          failing.push(`shell:${shellOf(name)}`);
          await setFaults();
        }
        // First the fill; later isolate memory, else the cache, else another fill.
        const source = step === 1 ? spec.first
          : config.memo ? "memory" : willCache ? "cache" : spec.first;
        const answers = {};
        for (const t of TARGETS) answers[t.key] = await get(urls[t.key] + routeOf(name));
        const py = answers.edgeshelf;
        const diffs = expectationProblems(py, spec, source, originBody);
        diffs.push(...compare(py, answers["js-peer"], { skipTiming: false }).map((d) => `js-peer: ${d}`));
        diffs.push(...compare(py, answers["js-naive"], { skipTiming: true }).map((d) => `js-naive: ${d}`));
        if (step === 1) {
          const shells = {};
          for (const t of TARGETS) {
            shells[t.key] = await cachedShell(caches, urls[t.key], shellOf(name), spec.version,
              willCache);
          }
          const cc = shells.edgeshelf?.find(([k]) => k === "cache-control")?.[1] ?? null;
          const want = willCache ? cached : null;
          if (cc !== want) diffs.push(`edgeshelf cached the shell with ${cc}, expected ${want}`);
          for (const t of ["js-peer", "js-naive"]) {
            if (JSON.stringify(shells[t]) !== JSON.stringify(shells.edgeshelf)) {
              diffs.push(`${t} cached ${JSON.stringify(shells[t])}, edgeshelf ` +
                JSON.stringify(shells.edgeshelf));
            }
          }
        }
        results.push({ config: configName, scenario: name, step, source: sourceOf(py),
          ok: diffs.length === 0, diffs });
      }
    }
  } finally {
    await stack.dispose();
  }
  return results;
}

const { values } = parseArgs({ options: { out: { type: "string" } } });
const results = [];
for (const [name, config] of Object.entries(CONFIGS)) {
  log(`configuration ${name}`);
  results.push(...(await runConfig(name, config)));
}
const bad = results.filter((r) => !r.ok);
for (const r of bad) log(`MISMATCH ${r.config} ${r.scenario} step ${r.step}:`, r.diffs.join("; "));
const text = `${JSON.stringify({ results }, null, 1)}\n`;
if (values.out) fs.writeFileSync(path.resolve(values.out), text);
else process.stdout.write(text);
log(`${results.length - bad.length}/${results.length} checks ok`);
if (bad.length) process.exitCode = 3;
