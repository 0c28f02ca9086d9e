// Runs the JavaScript peers' pure helpers (bench/workers/jscommon.mjs) in workerd, the peers' own
// runtime, on the cases read from stdin, and prints what each returned; test_peer_rules.py
// compares that with the Python definitions. workerd rather than Node: Node 20's JSON.parse
// does not give a reviver a number's source text, which the peers rely on to read `1.0` as
// Python's json does.
//
//   stdin:  {"rules": <bench/peer_rules.py's document>, "cases": {"<function>": [[args...], ...]}}
//   stdout: {"<function>": [result, ...]}
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const COMMON = path.join(HERE, "..", "..", "bench", "workers", "jscommon.mjs");

const WORKER = `
import * as c from "./jscommon.mjs";
export default {
  async fetch(request, env) {
    const rules = c.loadRules(env);
    const fns = {
      normalizeCountry: c.normalizeCountry,
      normalizeLang: c.normalizeLang,
      normalizeBucket: c.normalizeBucket,
      readProfile: c.readProfile,
      audienceFor: c.audienceFor,
      bestLanguage: c.bestLanguage,
      decodeSegment: c.decodeSegment,
      decodeShellPointer: (text) => c.decodeShellPointer(text, rules),
      decodeShellCopy: (text) => c.decodeShellCopy(text, rules),
      keptHeaders: (pairs) => c.keptHeaders(pairs, rules),
      isCrawler: (ua, verified) => c.isCrawler(ua, verified, rules),
      cookieValues: c.cookieValues,
      readUid: c.readUid,
      intVar: c.intVar,
      identify: (headers, cf) => {
        const who = c.identify(new Headers(headers), cf, "es_uid", rules);
        // A minted ID is random: its format and its cookie are what must agree.
        const minted = who.kind === "minted";
        return {
          kind: who.kind,
          uid: minted ? c.UID_RE.test(who.uid) : who.uid,
          cookies: minted ? who.cookies.map((v) => v.replace(who.uid, "UID")) : who.cookies,
        };
      },
      pageHeaders: (contentType, kept) => c.pageHeaders(contentType, kept, rules),
    };
    const out = {};
    for (const [name, calls] of Object.entries(await request.json())) {
      out[name] = calls.map((args) => fns[name](...args) ?? null);
    }
    return Response.json(out);
  },
};
`;

let input = "";
for await (const chunk of process.stdin) input += chunk; // readFileSync(0) fails on a pipe
const { rules, cases } = JSON.parse(input);
const mf = new Miniflare({
  modules: [
    { type: "ESModule", path: "check.mjs", contents: WORKER },
    { type: "ESModule", path: "jscommon.mjs", contents: fs.readFileSync(COMMON, "utf8") },
  ],
  compatibilityDate: "2024-11-01",
  bindings: { EDGESHELF_RULES: rules },
});
try {
  const res = await mf.dispatchFetch("http://check.invalid/", {
    method: "POST", body: JSON.stringify(cases),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`the check Worker answered ${res.status}: ${text}`);
  process.stdout.write(text);
} finally {
  await mf.dispose();
}
