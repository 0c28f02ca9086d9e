// The naive JavaScript peer: edgeshelf's read path as a JavaScript team would first write it,
// for the edge benchmark. Every request reads KV (the profile, then the segment fallback chain
// one read at a time; only the shell pointer is memoised in isolate memory), matches the shell
// in the Cache API and streams it through HTMLRewriter, which injects the escaped cards and
// JSON payload into the first slot; one JSON log line per request. Same configuration
// ([vars]), validation, identity (crawlers, Sec-GPC), cache key, fill (the version's copy in
// KV, else the origin), kept origin headers and response bodies as edgeshelf (jscommon.mjs).
// It keeps the read path edgeshelf had before the isolate kept segments and the split shell in
// memory, and has no audience cookie, so it reports `desc=cache` and logs no `memo_reads`: the
// benchmark checks it against edgeshelf by body only. bench/workers/jspeer.mjs is the
// like-for-like peer (same algorithm). It is not shipped.

import {
  SEGMENT_PREFIX,
  SHELL_PREFIX,
  USER_PREFIX,
  LEVELS,
  SLOT_SELECTOR,
  RENDER_ATTR,
  ORIGIN_RE,
  GLOBAL_CHAIN,
  isStr,
  decodeSegment,
  scriptHtml,
  cardsHtml,
  loadConfig,
  kvRead,
  unavailable,
  round3,
  identify,
  audienceFor,
  chainFor,
  pageHeaders,
  pointerFresh,
  currentPointer,
  readPointer,
  fromCache,
  fill,
} from "./jscommon.mjs";

// --- per isolate ------------------------------------------------------------------------------

let ISO = null;
function isolate(env) {
  if (ISO === null) {
    const config = loadConfig(env);
    ISO = {
      config,
      kv: env.EDGESHELF_KV,
      textOpts: { type: "text", cacheTtl: config.kvCacheTtl },
      pointers: new Map(), // name -> [version, path, expiresAt]
    };
  }
  return ISO;
}

// --- the handler ------------------------------------------------------------------------------

function newRecord() {
  return {
    event: "edgeshelf.request", method: "GET", path: "/", visitor: "none", bot: false,
    profile: "none", profile_read: "skipped", segment: "", fallback: 3, segment_reads: [],
    kv_reads: 0, kv_misses: 0, shell: "none", shell_version: "", status: 200, kv_ms: 0,
    shell_ms: 0, total_ms: 0, errors: [],
  };
}

export default {
  async fetch(request, env, ctx) {
    const started = performance.now();
    const record = newRecord();
    let response;
    try {
      const iso = isolate(env);
      const url = new URL(request.url);
      const path = url.pathname || "/";
      record.method = request.method;
      record.path = path.slice(0, 256);
      const shellName = iso.config.paths.get(path);
      if ((request.method !== "GET" && request.method !== "HEAD") || shellName === undefined) {
        if (!iso.config.originUrl) return unavailable();
        try {
          return await fetch(new Request(iso.config.originUrl + path + url.search, request));
        } catch {
          return unavailable(502);
        }
      }
      response = await personalize(iso, request, ctx, url, shellName, record, started);
    } catch (err) {
      record.errors.push(`unhandled: ${err?.name ?? "Error"}`);
      response = unavailable();
    }
    record.status = response.status;
    record.total_ms = round3(performance.now() - started);
    record.kv_ms = round3(record.kv_ms);
    record.shell_ms = round3(record.shell_ms);
    console.log(JSON.stringify(record));
    return response;
  },
};

async function personalize(iso, request, ctx, url, shellName, record, started) {
  const cfg = iso.config;
  const headers = request.headers;

  const who = identify(headers, request.cf, cfg.cookieName, cfg.rules, cfg.audienceCookie);
  const uid = who.uid;
  record.visitor = who.kind;
  record.bot = who.kind === "bot";

  const profilePromise = uid !== null && who.kind === "cookie"
    ? iso.kv.get(USER_PREFIX + uid, iso.textOpts) : null;
  const pointerPromise = pointerFresh(iso, shellName, Date.now())
    ? null : iso.kv.get(SHELL_PREFIX + shellName, iso.textOpts);
  const requestOrigin = ORIGIN_RE.test(url.origin) ? url.origin : "https://edgeshelf.invalid";
  let version, shellPath, cacheKey, cachePromise;
  const resolve = () => {
    [version, shellPath] = currentPointer(iso, shellName, url.pathname);
    cacheKey = `${requestOrigin}/__edgeshelf/shell/${encodeURIComponent(shellName)}/${encodeURIComponent(version)}`;
    cachePromise = caches.default.match(cacheKey);
  };
  if (pointerPromise === null) resolve();

  const kvStarted = performance.now();
  let chain = GLOBAL_CHAIN; // crawlers: always the global shelf
  if (!record.bot) {
    let audience;
    try {
      let profileText = null;
      if (profilePromise !== null) {
        try {
          const value = await profilePromise;
          profileText = isStr(value) ? value : null;
        } catch (err) {
          record.errors.push(`kv-profile: ${err?.name ?? "Error"}`);
        }
        kvRead(record, profileText !== null ? "hit" : "miss");
        record.profile_read = profileText === null ? "miss" : "hit";
      }
      audience = audienceFor(profileText, request.cf?.country, headers.get("accept-language"));
      if (profileText !== null && audience.source !== "kv") record.profile_read = "invalid";
    } catch (err) {
      record.errors.push(`profile: ${err?.name ?? "Error"}`);
      audience = audienceFor(null, null, null);
    }
    record.profile = audience.source;
    chain = chainFor(audience);
  }

  if (pointerPromise !== null) {
    await readPointer(iso, shellName, pointerPromise, record);
    resolve();
  }

  // The segment chain, one KV read at a time.
  let shelf = { ids: [], segment: "", fallback: 3, schema: cfg.schema };
  for (const [level, seg] of chain) {
    let text = null;
    try {
      text = await iso.kv.get(`${SEGMENT_PREFIX}${seg}:${cfg.schema}`, iso.textOpts);
    } catch (err) {
      record.errors.push(`kv-segment: ${err?.name ?? "Error"}`);
    }
    text = isStr(text) ? text : null;
    const decoded = text === null ? null : decodeSegment(text, cfg.schema);
    const ids = decoded !== null && decoded.ids.length ? decoded.ids : null;
    const outcome = ids !== null ? "hit" : text === null ? "miss" : "invalid";
    kvRead(record, outcome);
    record.segment_reads.push(outcome);
    if (ids !== null) {
      shelf = { ids, segment: seg, fallback: level, schema: cfg.schema };
      break;
    }
  }
  record.segment = shelf.segment;
  record.fallback = shelf.fallback;
  record.kv_ms = performance.now() - kvStarted;

  const shellStarted = performance.now();
  const shell = await fromCache(cachePromise, false, cfg.rules, record.errors) ??
    await fill(iso, ctx, cacheKey, shellName, version, shellPath, record.errors);
  record.shell_ms = performance.now() - shellStarted;
  if (shell === null) return unavailable();
  record.shell = shell.source;
  record.shell_version = version;

  const out = new Headers(pageHeaders(shell.contentType, shell.headers, cfg.rules));
  out.set("server-timing",
    `kv;dur=${record.kv_ms.toFixed(2)}, shell;dur=${record.shell_ms.toFixed(2)};desc=${shell.source}`);
  for (const c of who.cookies) out.append("set-cookie", c);
  if (cfg.debugHeaders) {
    out.set("x-edgeshelf-debug",
      `segment=${shelf.segment}; fallback=${LEVELS[shelf.fallback]}; shell=${shell.source}`);
  }
  const head = record.method === "HEAD";
  const base = new Response(head ? null : shell.body, { headers: out });
  if (head) return base;
  const script = scriptHtml(shelf);
  const cards = shelf.ids.length ? cardsHtml(shelf.ids) : null;
  let done = false;
  return new HTMLRewriter().on(SLOT_SELECTOR, {
    element(el) {
      if (done) return;
      done = true;
      if (cards !== null && el.getAttribute(RENDER_ATTR) === "cards") {
        el.setInnerContent(cards + script, { html: true });
      } else {
        el.append(script, { html: true });
      }
    },
  }).transform(base);
}
