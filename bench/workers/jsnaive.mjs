// The naive JavaScript peer: edgeshelf's read path as a JavaScript team would first write it,
// for the edge benchmark. Every request reads KV (the profile, then the segment fallback chain
// one read at a time; only the shell pointer is memoised in isolate memory), matches the shell
// in the Cache API and streams it through HTMLRewriter, which injects the escaped cards and
// JSON payload into the first slot; one JSON log line per request. Same configuration
// ([vars]), validation, cache key, origin fill and response bodies as edgeshelf.
// It keeps the read path edgeshelf had before the isolate kept segments and the split shell in
// memory, so it reports `desc=cache` and logs no `memo_reads`: the benchmark checks it against
// edgeshelf by body only. bench/workers/jspeer.mjs is the like-for-like peer (same algorithm).
// It is not shipped.

import {
  SEGMENT_PREFIX,
  SHELL_PREFIX,
  USER_PREFIX,
  DEFAULT_BUCKET,
  GLOBAL_SEGMENT,
  UNKNOWN,
  NO_POINTER_VERSION,
  PROFILE_FORMAT,
  MAX_SEGMENT_IDS,
  MAX_PROFILE_BYTES,
  MAX_SEGMENT_BYTES,
  MAX_SHELL_BYTES,
  MAX_CATEGORIES,
  COOKIE_MAX_AGE,
  CACHE_CONTROL_SHELL,
  LEVELS,
  SLOT_SELECTOR,
  RENDER_ATTR,
  UID_RE,
  VIDEO_ID_RE,
  COUNTRY_RE,
  LANG_RE,
  BUCKET_RE,
  SCHEMA_RE,
  SHELL_VERSION_RE,
  BUCKET_JUNK_RE,
  COOKIE_NAME_RE,
  PATH_RE,
  ORIGIN_RE,
  UNAVAILABLE_PAGE,
  isInt,
  isStr,
  normalizeCountry,
  normalizeLang,
  normalizeBucket,
  segmentId,
  loadsObject,
  decodeProfile,
  decodeSegment,
  decodeShellPointer,
  readUid,
  bestLanguage,
  escapeHtml,
  scriptHtml,
  cardsHtml,
  intVar,
  loadConfig,
  kvRead,
  unavailable,
  round3,
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
    event: "edgeshelf.request", method: "GET", path: "/", visitor: "none", profile: "none",
    profile_read: "skipped", segment: "", fallback: 3, segment_reads: [], kv_reads: 0,
    kv_misses: 0, shell: "none", shell_version: "", status: 200, kv_ms: 0, shell_ms: 0,
    total_ms: 0, errors: [],
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

  let setCookie = null;
  let uid = null;
  const gpc = headers.get("sec-gpc");
  if (gpc !== null && gpc.trim() === "1") {
    record.visitor = "gpc";
  } else {
    uid = readUid(headers.get("cookie"), cfg.cookieName);
    if (uid === null) {
      uid = crypto.randomUUID();
      setCookie = `${cfg.cookieName}=${uid}; Max-Age=${COOKIE_MAX_AGE}; Path=/; HttpOnly; Secure; SameSite=Lax`;
      record.visitor = "minted";
    } else {
      record.visitor = "cookie";
    }
  }

  const profilePromise = uid !== null && record.visitor === "cookie"
    ? iso.kv.get(USER_PREFIX + uid, iso.textOpts) : null;
  const memo = iso.pointers.get(shellName);
  const pointerPromise = memo !== undefined && memo[2] > Date.now()
    ? null : iso.kv.get(SHELL_PREFIX + shellName, iso.textOpts);
  const requestOrigin = ORIGIN_RE.test(url.origin) ? url.origin : "https://edgeshelf.invalid";
  let version, shellPath, cacheKey, cachePromise;
  const resolve = () => {
    const entry = iso.pointers.get(shellName);
    version = entry === undefined ? NO_POINTER_VERSION : entry[0];
    shellPath = entry === undefined || !entry[1] ? url.pathname : entry[1];
    cacheKey = `${requestOrigin}/__edgeshelf/shell/${encodeURIComponent(shellName)}/${encodeURIComponent(version)}`;
    cachePromise = caches.default.match(cacheKey);
  };
  if (pointerPromise === null) resolve();

  const kvStarted = performance.now();
  let audience;
  try {
    let profileText = null;
    if (profilePromise !== null) {
      try {
        profileText = await profilePromise;
      } catch (err) {
        record.errors.push(`kv-profile: ${err.name}`);
      }
      kvRead(record, profileText !== null ? "hit" : "miss");
      record.profile_read = profileText === null ? "miss" : "hit";
    }
    const profile = profileText !== null ? decodeProfile(profileText) : null;
    if (profile !== null) {
      audience = { country: profile.country, lang: profile.lang, bucket: profile.affinity_bucket, source: "kv" };
    } else {
      audience = {
        country: normalizeCountry(request.cf?.country),
        lang: bestLanguage(headers.get("accept-language")),
        bucket: DEFAULT_BUCKET,
        source: "request",
      };
      if (profileText !== null) record.profile_read = "invalid";
    }
  } catch (err) {
    record.errors.push(`profile: ${err?.name ?? "Error"}`);
    audience = { country: UNKNOWN, lang: UNKNOWN, bucket: DEFAULT_BUCKET, source: "request" };
  }
  record.profile = audience.source;

  if (pointerPromise !== null) {
    let pointerText = null;
    try {
      pointerText = await pointerPromise;
    } catch (err) {
      record.errors.push(`kv-pointer: ${err.name}`);
    }
    kvRead(record, pointerText !== null ? "hit" : "miss");
    const pointer = decodeShellPointer(pointerText);
    iso.pointers.set(shellName, pointer === null
      ? [NO_POINTER_VERSION, "", Date.now() + cfg.pointerTtlMs]
      : [pointer.version, pointer.path, Date.now() + cfg.pointerTtlMs]);
    resolve();
  }

  // The segment chain: exact, language default, global.
  const exact = segmentId(audience.country, audience.lang, audience.bucket);
  const langDefault = segmentId(audience.country, audience.lang, DEFAULT_BUCKET);
  const chain = [[0, exact]];
  if (langDefault !== exact) chain.push([1, langDefault]);
  chain.push([2, GLOBAL_SEGMENT]);
  let shelf = { ids: [], segment: "", fallback: 3, schema: cfg.schema };
  for (const [level, seg] of chain) {
    let text = null;
    try {
      text = await iso.kv.get(`${SEGMENT_PREFIX}${seg}:${cfg.schema}`, iso.textOpts);
    } catch (err) {
      record.errors.push(`kv-segment: ${err.name}`);
    }
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
  let shell = null;
  let cached;
  try {
    cached = await cachePromise;
  } catch (err) {
    record.errors.push(`cache: ${err.name}`);
  }
  if (cached !== undefined && cached !== null) {
    shell = {
      body: cached.body,
      contentType: cached.headers.get("content-type") || "text/html; charset=utf-8",
      source: "cache",
    };
  } else {
    shell = await fill(iso, ctx, cacheKey, shellName, version, shellPath, record.errors);
  }
  record.shell_ms = performance.now() - shellStarted;
  if (shell === null) return unavailable();
  record.shell = shell.source;
  record.shell_version = version;

  const out = new Headers({
    "content-type": shell.contentType,
    "cache-control": "private, no-store",
    vary: "Cookie",
    "server-timing": `kv;dur=${record.kv_ms.toFixed(2)}, shell;dur=${record.shell_ms.toFixed(2)};desc=${shell.source}`,
  });
  if (setCookie !== null) out.append("set-cookie", setCookie);
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
