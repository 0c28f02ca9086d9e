// Where the time goes, by ablation: copies of edgeshelf's Worker and of both JavaScript peers
// (same algorithm, naive) with one part of the read path cut out (the log line, the injection,
// the KV reads), plus the optimisations that were tried and not kept, all side by side in one
// workerd with the floors; the difference to the full Worker is what that part costs.
//
//   node bench/ablations.mjs [--out docs/bench-ablations.json] [--reps 4] [--duration 3]
//
// Variants are generated under .edgeshelf/ablate/ by textual patches of src/ (handler.py unless
// a patch names another file), bench/workers/jspeer.mjs and bench/workers/jsnaive.mjs; a patch
// that no longer applies stops the run (update it here).
//
// edgeshelf and the same-algorithm peer keep segment values and the split shell in isolate
// memory, so in the measured steady state (known user, one shell) they read one KV key (the
// profile) and build the page from kept Blobs with no HTMLRewriter pass; the naive peer reads
// the profile and the segment and streams the cached shell through HTMLRewriter. The cuts take
// out what each Worker does per request (bench/notes/method.md).
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/local/stack.mjs";
import { compareTargets } from "./lib/compare.mjs";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: path.join(ROOT, "docs", "bench-ablations.json") },
    reps: { type: "string", default: "4" },
    duration: { type: "string", default: "3" },
  },
});
const log = (...args) => console.error("[ablate]", ...args);
const WORK = path.join(ROOT, ".edgeshelf", "ablate");
const HANDLER = "edgeshelf/handler.py";
const PEER = path.join(ROOT, "bench", "workers", "jspeer.mjs");
const NAIVE = path.join(ROOT, "bench", "workers", "jsnaive.mjs");
const PROFILE_JSON = '{"affinity_bucket":"music","country":"us","fv":1,"lang":"en",' +
  '"last_seen":1763900000,"recent_categories":["music","gaming"]}';

// [old, new] pairs applied to src/edgeshelf/handler.py (or [old, new, file] to another file of
// src/) for Python, to bench/workers/jspeer.mjs (js) and to bench/workers/jsnaive.mjs (naive).
const CUTS = {
  "no-log": {
    what: "no log line (record serialised and logged)",
    py: [["    console.log(record.to_json())", "    pass"]],
    js: [["    console.log(JSON.stringify(record));", ""]],
    naive: [["    console.log(JSON.stringify(record));", ""]],
  },
  "no-inject": {
    what: "no injection (edgeshelf and the JS peer serve the kept shell whole, without the " +
      "shelf, instead of one Blob of its parts and the shelf's; the naive peer skips its " +
      "HTMLRewriter pass)",
    skipParity: true,
    py: [["        if parts is None:  # no slot, or a split not to be trusted: the shell as it is",
      "        if True:  # ablation: the shell as it is, no shelf", "edgeshelf/shell.py"]],
    js: [["    if (parts === null) { // no slot, or a split not to be trusted: the shell as it is",
      "    if (true) { // ablation: the shell as it is, no shelf"]],
    naive: [["  if (head) return base;", "  if (head || true) return base;"]],
  },
  "no-kv": {
    what: "no KV reads (the profile is a constant; edgeshelf and the JS peer already keep " +
      "segments and the shell pointer in isolate memory, the naive peer's segment read comes " +
      "from isolate memory after the first request)",
    skipParity: true, // a cold visitor then gets the known user's segment
    py: [
      ["        profile_promise = iso.kv.get(schema.profile_key(who.uid), iso.text_opts)\n",
        "        profile_promise = True\n"],
      ["            profile_text = ffi.text(await profile_promise)",
        `            profile_text = ${JSON.stringify(PROFILE_JSON)}`],
    ],
    js: [
      ["    ? iso.kv.get(USER_PREFIX + uid, iso.textOpts) : null;",
        `    ? Promise.resolve(${JSON.stringify(PROFILE_JSON)}) : null;`],
    ],
    naive: [
      ["    ? iso.kv.get(USER_PREFIX + uid, iso.textOpts) : null;",
        `    ? Promise.resolve(${JSON.stringify(PROFILE_JSON)}) : null;`],
      ["      text = await iso.kv.get(`${SEGMENT_PREFIX}${seg}:${cfg.schema}`, iso.textOpts);",
        "      text = iso.seg ?? (iso.seg = await iso.kv.get(`${SEGMENT_PREFIX}${seg}:${cfg.schema}`, iso.textOpts));"],
    ],
  },
};

// Optimisations tried and measured, not kept (docs/benchmarks.md says why).
const EXPERIMENTS = {
  "microtask-loop": {
    what: "asyncio callbacks on one queueMicrotask drain instead of a setTimeout each",
    py: [["        _ISOLATE = _Isolate(env)\n", `        _ISOLATE = _Isolate(env)
        import asyncio, collections, js  # noqa
        loop, ready = asyncio.get_event_loop(), collections.deque()
        def drain():
            while ready:
                h = ready.popleft()
                if not h.cancelled():
                    h._run()
        drain_proxy = create_proxy(drain)
        def call_soon(callback, *args, context=None):
            h = asyncio.Handle(callback, args, loop, context=context)
            if not ready:
                js.queueMicrotask(drain_proxy)
            ready.append(h)
            return h
        loop.call_soon = call_soon
`]],
  },
  "gc-freeze": {
    what: "gc.freeze() after the isolate's set-up (fewer objects for the cyclic GC to scan)",
    py: [["        _ISOLATE = _Isolate(env)\n", "        _ISOLATE = _Isolate(env)\n        import gc\n        gc.freeze()\n"]],
  },
};

function patched(text, patches, where) {
  for (const [oldText, newText] of patches) {
    if (!text.includes(oldText)) throw new Error(`patch for ${where} no longer applies:\n${oldText}`);
    text = text.replace(oldText, newText);
  }
  return text;
}

function pyVariant(name, patches) {
  const dir = path.join(WORK, name, "src");
  fs.rmSync(path.join(WORK, name), { recursive: true, force: true });
  fs.cpSync(path.join(ROOT, "src"), dir, { recursive: true, filter: (p) => !p.includes("__pycache__") });
  const byFile = new Map();
  for (const [oldText, newText, rel = HANDLER] of patches) {
    byFile.set(rel, [...(byFile.get(rel) ?? []), [oldText, newText]]);
  }
  for (const [rel, filePatches] of byFile) {
    const file = path.join(dir, rel);
    fs.writeFileSync(file, patched(fs.readFileSync(file, "utf8"), filePatches, `${name}/${rel}`));
  }
  return dir;
}

function jsVariant(name, patches, source = PEER) {
  fs.mkdirSync(WORK, { recursive: true });
  const file = path.join(WORK, `${name}.mjs`);
  const where = `${name} (${path.basename(source)})`;
  fs.writeFileSync(file, patched(fs.readFileSync(source, "utf8"), patches, where));
  // The peers import their shared rules from beside them.
  fs.copyFileSync(path.join(path.dirname(source), "jscommon.mjs"), path.join(WORK, "jscommon.mjs"));
  return file;
}

const targets = [
  { key: "py-floor", id: "py-floor", kind: "floor", lang: "python", variant: "floor" },
  { key: "js-floor", id: "js-floor", kind: "floor", lang: "js", variant: "floor" },
  { key: "js-peer", id: "js-peer", kind: "read-path", lang: "js", variant: "full" },
  { key: "js-naive", id: "js-naive", kind: "read-path", lang: "js-naive", variant: "full",
    parity: "body" },
  { key: "edgeshelf", id: "edgeshelf", kind: "read-path", lang: "python", variant: "full",
    srcDir: path.join(ROOT, "src") },
];
for (const [name, cut] of Object.entries(CUTS)) {
  targets.push({ key: `py-${name}`, id: "edgeshelf", kind: "read-path", lang: "python", variant: name,
    srcDir: pyVariant(`py-${name}`, cut.py), skipParity: cut.skipParity });
  targets.push({ key: `js-${name}`, id: "js-peer", kind: "read-path", lang: "js", variant: name,
    srcDir: jsVariant(`js-${name}`, cut.js), skipParity: cut.skipParity });
  targets.push({ key: `naive-${name}`, id: "js-naive", kind: "read-path", lang: "js-naive",
    variant: name, srcDir: jsVariant(`naive-${name}`, cut.naive, NAIVE), skipParity: cut.skipParity,
    parity: "body" });
}
for (const [name, exp] of Object.entries(EXPERIMENTS)) {
  targets.push({ key: `exp-${name}`, id: "edgeshelf", kind: "read-path", lang: "python",
    variant: name, experiment: true, srcDir: pyVariant(`exp-${name}`, exp.py) });
}

const started = new Date();
const params = { size: "10k", visitor: "known", conns: 1, durationS: Number(values.duration),
  reps: Number(values.reps) };
const results = await compareTargets(targets, { ...params, log });
const rows = targets.map((t) => ({
  key: t.key, lang: t.lang, variant: t.variant, experiment: Boolean(t.experiment),
  what: CUTS[t.variant]?.what ?? EXPERIMENTS[t.variant]?.what ?? t.variant, ...results[t.key],
}));
for (const r of rows) {
  log(`${r.key.padEnd(22)} p50 ${r.p50_ms.toFixed(3)} ms  cpu ${r.cpu_ms.toFixed(3)} ms/req`);
}
fs.writeFileSync(values.out, `${JSON.stringify({
  meta: { date: started.toISOString(), params }, rows,
}, null, 1)}\n`);
log(`wrote ${path.relative(process.cwd(), values.out)}`);
