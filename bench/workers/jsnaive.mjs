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

const SEGMENT_PREFIX = "seg:";
const SHELL_PREFIX = "shell:";
const USER_PREFIX = "u:";
const DEFAULT_BUCKET = "default";
const GLOBAL_SEGMENT = "global";
const UNKNOWN = "xx";
const NO_POINTER_VERSION = "0";
const PROFILE_FORMAT = 1;
const MAX_SEGMENT_IDS = 50;
const MAX_PROFILE_BYTES = 2048;
const MAX_SEGMENT_BYTES = 8192;
const MAX_SHELL_BYTES = 5 * 1024 * 1024;
const MAX_CATEGORIES = 8;
const COOKIE_MAX_AGE = 400 * 24 * 60 * 60;
const CACHE_CONTROL_SHELL = "public, s-maxage=31536000, max-age=0";
const LEVELS = ["exact", "lang-default", "global", "none"];
const SLOT_SELECTOR = "[data-edgeshelf-slot]";
const RENDER_ATTR = "data-edgeshelf-render";

const UID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const VIDEO_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const COUNTRY_RE = /^[a-z]{2}$/;
const LANG_RE = /^[a-z]{2,3}$/;
const BUCKET_RE = /^[a-z0-9_]{1,32}$/;
const SCHEMA_RE = /^v[0-9]{1,4}$/;
const SHELL_VERSION_RE = /^[A-Za-z0-9._-]{1,64}$/;
const BUCKET_JUNK_RE = /[^a-z0-9]+/g;
const COOKIE_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PATH_RE = /^\/[a-z0-9_/-]{0,64}$/;
const ORIGIN_RE = /^https?:\/\/[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$/;
const UNAVAILABLE_PAGE =
  "<!doctype html><html lang=en><meta charset=utf-8><title>Back soon</title>" +
  "<h1>We'll be right back</h1><p>This page is briefly unavailable. Please retry in a minute.";

// --- pure helpers (mirrors of edgeshelf.schema / profile / identity / inject) ----------------

const isInt = (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 53;
const isStr = (v) => typeof v === "string";

function normalizeCountry(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase();
    if (COUNTRY_RE.test(v)) return v;
  }
  return UNKNOWN;
}

function normalizeLang(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase().replaceAll("_", "-").split("-", 1)[0];
    if (LANG_RE.test(v)) return v;
  }
  return UNKNOWN;
}

function normalizeBucket(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase().replace(BUCKET_JUNK_RE, "_").replace(/^_+|_+$/g, "");
    v = v.slice(0, 32).replace(/_+$/, "");
    if (v) return v;
  }
  return DEFAULT_BUCKET;
}

const segmentId = (c, l, b) => `${normalizeCountry(c)}-${normalizeLang(l)}-${normalizeBucket(b)}`;

function loadsObject(text, limit) {
  if (!isStr(text) || !text || text.length > limit) return null;
  try {
    const v = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function decodeProfile(text) {
  const o = loadsObject(text, MAX_PROFILE_BYTES);
  if (o === null || o.fv !== PROFILE_FORMAT) return null;
  const cats = o.recent_categories;
  if (
    !(isStr(o.country) && COUNTRY_RE.test(o.country)) ||
    !(isStr(o.lang) && LANG_RE.test(o.lang)) ||
    !(isStr(o.affinity_bucket) && BUCKET_RE.test(o.affinity_bucket)) ||
    !Array.isArray(cats) || cats.length > MAX_CATEGORIES ||
    !cats.every((c) => isStr(c) && BUCKET_RE.test(c)) ||
    !isInt(o.last_seen)
  ) {
    return null;
  }
  return o;
}

function decodeSegment(text, schema) {
  const o = loadsObject(text, MAX_SEGMENT_BYTES);
  if (o === null) return null;
  const { ids, built_at: builtAt, version } = o;
  if (!(Array.isArray(ids) && isInt(builtAt) && isInt(version))) return null;
  if (!SCHEMA_RE.test(schema) || version !== Number(schema.slice(1))) return null;
  const seen = [];
  for (const vid of ids) {
    if (isStr(vid) && VIDEO_ID_RE.test(vid) && !seen.includes(vid)) {
      seen.push(vid);
      if (seen.length === MAX_SEGMENT_IDS) break;
    }
  }
  return { ids: seen, built_at: builtAt, version };
}

function decodeShellPointer(text) {
  const o = loadsObject(text, 1024);
  if (o === null) return null;
  const { version, path } = o;
  if (!(isStr(version) && SHELL_VERSION_RE.test(version) && isStr(path))) return null;
  if (!(path.startsWith("/") && path.length <= 256 && !path.includes("\\") && !path.includes("//"))) {
    return null;
  }
  return { version, path };
}

function readUid(cookie, name) {
  if (!cookie) return null;
  for (const part of cookie.slice(0, 16384).split(";")) {
    const eq = part.indexOf("=");
    if (eq >= 0 && part.slice(0, eq).trim() === name) {
      let value = part.slice(eq + 1).trim().replace(/^"+|"+$/g, "");
      if (UID_RE.test(value)) return value;
    }
  }
  return null;
}

function bestLanguage(header) {
  if (!header) return UNKNOWN;
  let best = UNKNOWN;
  let bestQ = 0;
  for (const entry of header.slice(0, 2048).split(",").slice(0, 32)) {
    const semi = entry.indexOf(";");
    const tag = (semi < 0 ? entry : entry.slice(0, semi)).trim();
    if (!tag || tag === "*") continue;
    let q = 1;
    const params = semi < 0 ? "" : entry.slice(semi + 1).trim();
    if (params) {
      const eq = params.indexOf("=");
      const name = eq < 0 ? params : params.slice(0, eq);
      if (name.trim().toLowerCase() !== "q") continue;
      q = Number(eq < 0 ? "" : params.slice(eq + 1).trim());
      if (!(q >= 0 && q <= 1)) continue;
    }
    const lang = normalizeLang(tag);
    if (lang !== UNKNOWN && q > bestQ) {
      best = lang;
      bestQ = q;
    }
  }
  return best;
}

const escapeHtml = (s) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#x27;");

function scriptHtml(shelf) {
  const payload = JSON.stringify({
    ids: shelf.ids, segment: shelf.segment, fallback: shelf.fallback, schema: shelf.schema,
  }).replace(/[<>&\u0080-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return `<script type="application/json" id="edgeshelf-shelf">${payload}</script>`;
}

function cardsHtml(ids) {
  let items = "";
  for (const vid of ids) {
    const v = escapeHtml(vid);
    items += `<li class="card"><a href="/watch/${v}"><div class="thumb">${v}</div>` +
      `<span>Video ${v}</span></a></li>`;
  }
  return '<h2 id="shelf-title">Picked for you</h2>' +
    `<ul class="row es-rendered" id="edgeshelf-cards">${items}</ul>`;
}

// --- per isolate ------------------------------------------------------------------------------

function intVar(raw, dflt, lo, hi) {
  if (raw === undefined || raw === null) return dflt;
  const v = Number.parseInt(String(raw), 10);
  return Number.isNaN(v) ? dflt : Math.min(Math.max(v, lo), hi);
}

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
