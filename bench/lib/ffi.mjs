// Where a Python Worker's time goes: the cost of single operations (FFI crossings, conversions,
// edgeshelf's pure helpers) measured in the FFI probe Worker (bench/workers/pyprofile). Each
// operation runs N times inside one request; the request is timed from outside (workerd
// freezes clocks during synchronous work) and an empty loop's request is subtracted.
import { Log, LogLevel, Miniflare } from "miniflare";
import { freePort } from "./proc.mjs";
import { targetOptions } from "./targets.mjs";

// name, what it stands for in the read path, iterations in a full run
export const OPS = [
  ["js_getattr", "read a JS property (`request.method`) and convert it", 5000],
  ["js_getattr_missing", "`getattr(js_obj, \"js_object\", default)` on a JS object (a miss)", 2000],
  ["headers_get", "`headers.get(name)` on the request (a JS call)", 5000],
  ["perf_counter", "`time.perf_counter()`", 5000],
  ["urlsplit", "`urllib.parse.urlsplit(request.url)`", 2000],
  ["to_js_pairs", "`to_js` of 4 header pairs", 2000],
  ["headers_from_to_js", "`Headers.new(to_js(4 pairs))`", 2000],
  ["headers_clone_template", "`Headers.new(prebuilt)` + one `.set`", 2000],
  ["init_fromentries", "`Object.fromEntries(to_js([(\"headers\", h)]))`", 2000],
  ["response_new", "`Response.new(body, prebuilt_init)`", 2000],
  ["proxy_create_destroy", "`create_proxy(obj)` then `.destroy()`", 2000],
  ["rewriter_setup", "`HTMLRewriter.new().on(sel, proxy).onDocument(proxy)` with its proxy", 1000],
  ["str_to_js_4k", "pass a 4 KB Python `str` to JS (e.g. the injected HTML)", 2000],
  ["await_js_promise", "`await` a resolved JS promise from Python", 1000],
  ["read_uid", "`identity.read_uid(cookie)`", 2000],
  ["profile_key", "`schema.profile_key(uid)` (validates the UID)", 5000],
  ["mint_uid", "`identity.mint_uid()`", 2000],
  ["audience_for", "`audience_for(profile_json, ...)`: decode + validate a profile", 1000],
  ["chain_for", "`chain_for(audience, schema)`: segment keys", 2000],
  ["ids_from_segment", "`ids_from(text)`: decode + validate a 50-ID segment", 500],
  ["cache_key_url", "`cache_key_url(origin, name, version)`", 2000],
  ["cards_and_script_html", "`cards_html(50 IDs) + script_html(shelf)`", 300],
  ["record_to_json", "`RequestRecord.to_json()` (the log line)", 1000],
  ["print_log_line", "`print(log_line)` (to console.log)", 1000],
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function timed(url) {
  const t = performance.now();
  const r = await fetch(url);
  await r.text();
  if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
  return performance.now() - t;
}

export async function measureFfi({ reps, scale, bindings, log }) {
  const port = await freePort();
  const mf = new Miniflare({
    host: "127.0.0.1",
    port,
    log: new Log(LogLevel.WARN),
    cf: { country: "US", colo: "LCL" },
    handleRuntimeStdio: (out, err) => {
      out.resume();
      err.resume();
    },
    workers: [targetOptions("py-profile", { bindings, name: "ffi-probe" })],
  });
  const url = (await mf.ready).href.replace(/\/$/, "");
  const ops = [];
  try {
    for (const [name, what, full] of OPS) {
      const n = Math.max(10, Math.round(full * scale));
      await timed(`${url}/op/${name}?n=${n}`); // warm
      const perOp = [];
      for (let i = 0; i < reps; i++) {
        const base = await timed(`${url}/op/noop?n=${n}`);
        const t = await timed(`${url}/op/${name}?n=${n}`);
        perOp.push(((t - base) * 1000) / n);
      }
      ops.push({ name, what, n, us_per_op: median(perOp), samples_us: perOp });
      log(`ffi ${name}: ${median(perOp).toFixed(2)} µs/op`);
    }
  } finally {
    await mf.dispose();
  }
  return { iterations: Math.round(2000 * scale), reps, ops };
}
