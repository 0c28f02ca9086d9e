// Where the time goes, by ablation: copies of edgeshelf's Worker and of the JavaScript peer with
// one part of the read path cut out (the log line, the HTMLRewriter injection, the two KV
// reads), plus the optimisations that were tried and not kept, all side by side in one workerd
// with the floors; the difference to the full Worker is what that part costs.
//
//   node bench/ablations.mjs [--out docs/bench-ablations.json] [--reps 4] [--duration 3]
//
// Variants are generated under .edgeshelf/ablate/ by textual patches of src/ and
// bench/workers/jspeer.mjs; a patch that no longer applies stops the run (update it here).
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
const PROFILE_JSON = '{"affinity_bucket":"music","country":"us","fv":1,"lang":"en",' +
  '"last_seen":1763900000,"recent_categories":["music","gaming"]}';

// [old, new] pairs applied to src/edgeshelf/handler.py (Python) or the peer (JavaScript).
const CUTS = {
  "no-log": {
    what: "no log line (record serialised and printed)",
    py: [["    print(record.to_json())", "    pass"]],
    js: [["    console.log(JSON.stringify(record));", ""]],
  },
  "no-rewriter": {
    what: "no HTMLRewriter injection (the shell is returned as is)",
    py: [['    if method == "HEAD":\n        return base', '    if method == "HEAD" or True:\n        return base']],
    js: [["  if (head) return base;", "  if (head || true) return base;"]],
    skipParity: true,
  },
  "no-kv": {
    what: "no KV reads (profile and segment come from isolate memory after the first request)",
    skipParity: true, // a cold visitor then gets the known user's segment
    py: [
      ["        iso.kv.get(schema.profile_key(uid), iso.text_opts)\n", "        True\n"],
      ["            profile_text = await profile_promise",
        `            profile_text = ${JSON.stringify(PROFILE_JSON)}`],
      ["            text = await iso.kv.get(step.key, iso.text_opts)",
        "            text = getattr(iso, '_seg', None) or await iso.kv.get(step.key, iso.text_opts)\n" +
        "            iso._seg = text"],
    ],
    js: [
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
  "console-log": {
    what: "the log line through js.console.log instead of print()",
    py: [["    print(record.to_json())", "    import js\n    js.console.log(record.to_json())"]],
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
  const file = path.join(dir, HANDLER);
  fs.writeFileSync(file, patched(fs.readFileSync(file, "utf8"), patches, `${name}/${HANDLER}`));
  return dir;
}

function jsVariant(name, patches) {
  fs.mkdirSync(WORK, { recursive: true });
  const file = path.join(WORK, `${name}.mjs`);
  fs.writeFileSync(file, patched(fs.readFileSync(PEER, "utf8"), patches, `${name} (jspeer.mjs)`));
  return file;
}

const targets = [
  { key: "py-floor", id: "py-floor", kind: "floor", lang: "python", variant: "floor" },
  { key: "js-floor", id: "js-floor", kind: "floor", lang: "js", variant: "floor" },
  { key: "js-peer", id: "js-peer", kind: "read-path", lang: "js", variant: "full" },
  { key: "edgeshelf", id: "edgeshelf", kind: "read-path", lang: "python", variant: "full",
    srcDir: path.join(ROOT, "src") },
];
for (const [name, cut] of Object.entries(CUTS)) {
  targets.push({ key: `py-${name}`, id: "edgeshelf", kind: "read-path", lang: "python", variant: name,
    srcDir: pyVariant(`py-${name}`, cut.py), skipParity: cut.skipParity });
  targets.push({ key: `js-${name}`, id: "js-peer", kind: "read-path", lang: "js", variant: name,
    srcDir: jsVariant(`js-${name}`, cut.js), skipParity: cut.skipParity });
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
