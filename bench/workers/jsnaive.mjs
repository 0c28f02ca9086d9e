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
} from "./jsschema.mjs";

// --- per isolate ------------------------------------------------------------------------------

function loadConfig(env) {
  const cookieName = isStr(env.COOKIE_NAME) && COOKIE_NAME_RE.test(env.COOKIE_NAME)
    ? env.COOKIE_NAME : "es_uid";
  const schema = isStr(env.SEGMENT_SCHEMA) && SCHEMA_RE.test(env.SEGMENT_SCHEMA)
    ? env.SEGMENT_SCHEMA : "v3";
  let originUrl = isStr(env.ORIGIN_URL) ? env.ORIGIN_URL.replace(/\/+$/, "") : "";
  if (!originUrl.startsWith("https://") && !originUrl.startsWith("http://")) originUrl = "";
  const paths = new Map();
  for (const raw of String(env.PERSONALIZED_PATHS ?? "/").split(",")) {
    const item = raw.trim();
    if (item && PATH_RE.test(item) && !item.includes("//")) {
      const name = item.replace(/^\/+|\/+$/g, "").replaceAll("/", "_").replaceAll("-", "_");
      paths.set(item, name ? name.slice(0, 32) : "home");
    }
  }
  if (paths.size === 0) paths.set("/", "home");
  return {
    cookieName,
    schema,
    originUrl,
    paths,
    kvCacheTtl: intVar(env.KV_CACHE_TTL, 60, 30, 86400),
    originTimeoutMs: intVar(env.ORIGIN_TIMEOUT_MS, 1500, 50, 30000),
    debugHeaders: ["1", "true", "yes"].includes(String(env.DEBUG_HEADERS)),
    pointerTtlMs: intVar(env.SHELL_POINTER_TTL, 10, 0, 300) * 1000,
  };
}

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

function kvRead(record, outcome) {
  record.kv_reads += 1;
  if (outcome !== "hit") record.kv_misses += 1;
}

function unavailable(status = 503) {
  return new Response(UNAVAILABLE_PAGE, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "retry-after": "30",
    },
  });
}

const round3 = (x) => Math.round(x * 1000) / 1000;

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

async function fill(iso, ctx, cacheKey, name, version, path, errors) {
  let text = null;
  let source = "origin";
  const cfg = iso.config;
  if (cfg.originUrl) {
    try {
      const resp = await fetch(cfg.originUrl + path, {
        headers: { accept: "text/html", "user-agent": "edgeshelf-worker" },
        signal: AbortSignal.timeout(cfg.originTimeoutMs),
        redirect: "follow",
      });
      const ctype = resp.headers.get("content-type") || "";
      const length = resp.headers.get("content-length");
      if (resp.status !== 200) errors.push(`origin: status ${resp.status}`);
      else if (!ctype.toLowerCase().includes("text/html")) errors.push("origin: not text/html");
      else if (length !== null && /^\d+$/.test(length) && Number(length) > MAX_SHELL_BYTES) {
        errors.push("origin: shell too large");
      } else {
        const body = await resp.text();
        if (body.length > 0 && body.length <= MAX_SHELL_BYTES) text = body;
        else errors.push("origin: shell too large or empty");
      }
    } catch (err) {
      errors.push(`origin: ${err.name}`);
    }
  }
  if (text === null && version !== NO_POINTER_VERSION) {
    source = "kv-backup";
    let backup = null;
    try {
      backup = await iso.kv.get(`${SHELL_PREFIX}${name}:${version}`, iso.textOpts);
    } catch (err) {
      errors.push(`kv-backup: ${err.name}`);
    }
    text = isStr(backup) && backup.length > 0 && backup.length <= MAX_SHELL_BYTES ? backup : null;
  }
  if (text === null) return null;
  const cachedCopy = new Response(text, {
    headers: { "content-type": "text/html; charset=utf-8", "cache-control": CACHE_CONTROL_SHELL },
  });
  ctx.waitUntil(caches.default.put(cacheKey, cachedCopy));
  return { body: text, contentType: "text/html; charset=utf-8", source };
}
