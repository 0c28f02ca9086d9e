// What the JavaScript peers (bench/workers/jspeer.mjs, jsnaive.mjs) share: edgeshelf's rules
// (the KV key schema and payload validation of src/edgeshelf/schema.py, the request signals of
// identity.py and profile.py, the escaping of inject.py) and the plumbing around the read path
// (configuration from [vars], the origin / KV-backup fill of the cache, the 503 page), written
// once in JavaScript so both peers validate, configure and render exactly alike. Benchmark code only; the Worker's own definition is
// the Python schema module. A variant of a peer (bench/ab.mjs --jsb, bench/ablations.mjs) needs
// this file beside it.

export const SEGMENT_PREFIX = "seg:";
export const SHELL_PREFIX = "shell:";
export const USER_PREFIX = "u:";
export const DEFAULT_BUCKET = "default";
export const GLOBAL_SEGMENT = "global";
export const UNKNOWN = "xx";
export const NO_POINTER_VERSION = "0";
export const PROFILE_FORMAT = 1;
export const MAX_SEGMENT_IDS = 50;
export const MAX_PROFILE_BYTES = 2048;
export const MAX_SEGMENT_BYTES = 8192;
export const MAX_SHELL_BYTES = 5 * 1024 * 1024;
export const MAX_CATEGORIES = 8;
export const COOKIE_MAX_AGE = 400 * 24 * 60 * 60;
export const COOKIE_ATTRIBUTES = "Path=/; HttpOnly; Secure; SameSite=Lax";
export const AUDIENCE_FORMAT = "a1";
export const AUDIENCE_TTL_DEFAULT = 3600;
export const CACHE_CONTROL_SHELL = "public, s-maxage=31536000, max-age=0";
export const LEVELS = ["exact", "lang-default", "global", "none"];
export const SLOT_SELECTOR = "[data-edgeshelf-slot]";
export const RENDER_ATTR = "data-edgeshelf-render";

export const UID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const VIDEO_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const COUNTRY_RE = /^[a-z]{2}$/;
export const LANG_RE = /^[a-z]{2,3}$/;
export const BUCKET_RE = /^[a-z0-9_]{1,32}$/;
export const SCHEMA_RE = /^v[0-9]{1,4}$/;
export const SHELL_VERSION_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const BUCKET_JUNK_RE = /[^a-z0-9]+/g;
export const COOKIE_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const PATH_RE = /^\/[a-z0-9_/-]{0,64}$/;
export const ORIGIN_RE = /^https?:\/\/[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$/;
// The audience cookie (issue 14): `a1.<country>.<lang>.<bucket>.<k|r>.<tag>`,
// each part under the schema's key rules, so it can only name what a segment key can name.
export const AUDIENCE_RE = /^a1\.([a-z]{2})\.([a-z]{2,3})\.([a-z0-9_]{1,32})\.([kr])\.([0-9a-f]{8})$/;
// Crawlers get no cookie. Not in the spec's words: align with the Python Worker's rule.
export const CRAWLER_RE = /bot|crawl|spider|slurp|facebookexternalhit/i;
export const UNAVAILABLE_PAGE =
  "<!doctype html><html lang=en><meta charset=utf-8><title>Back soon</title>" +
  "<h1>We'll be right back</h1><p>This page is briefly unavailable. Please retry in a minute.";

// --- pure helpers (mirrors of edgeshelf.schema / profile / identity / inject) ----------------

export const isInt = (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 53;
export const isStr = (v) => typeof v === "string";

export function normalizeCountry(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase();
    if (COUNTRY_RE.test(v)) return v;
  }
  return UNKNOWN;
}

export function normalizeLang(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase().replaceAll("_", "-").split("-", 1)[0];
    if (LANG_RE.test(v)) return v;
  }
  return UNKNOWN;
}

export function normalizeBucket(v) {
  if (isStr(v)) {
    v = v.trim().toLowerCase().replace(BUCKET_JUNK_RE, "_").replace(/^_+|_+$/g, "");
    v = v.slice(0, 32).replace(/_+$/, "");
    if (v) return v;
  }
  return DEFAULT_BUCKET;
}

export const segmentId = (c, l, b) => `${normalizeCountry(c)}-${normalizeLang(l)}-${normalizeBucket(b)}`;

export function loadsObject(text, limit) {
  if (!isStr(text) || !text || text.length > limit) return null;
  try {
    const v = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

export function decodeProfile(text) {
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

export function decodeSegment(text, schema) {
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

export function decodeShellPointer(text) {
  const o = loadsObject(text, 1024);
  if (o === null) return null;
  const { version, path } = o;
  if (!(isStr(version) && SHELL_VERSION_RE.test(version) && isStr(path))) return null;
  if (!(path.startsWith("/") && path.length <= 256 && !path.includes("\\") && !path.includes("//"))) {
    return null;
  }
  return { version, path };
}

export function readUid(cookie, name) {
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

/** `name=value; Max-Age=...` with the attributes every edgeshelf cookie carries. */
export const cookieHeader = (name, value, maxAge) =>
  `${name}=${value}; Max-Age=${maxAge}; ${COOKIE_ATTRIBUTES}`;

/** FNV-1a 32-bit over the ASCII bytes of a visitor ID, as 8 lower-case hex digits. */
export function uidTag(uid) {
  let h = 0x811c9dc5;
  for (let i = 0; i < uid.length; i++) {
    h = Math.imul(h ^ uid.charCodeAt(i), 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** The es_aud value for an audience and the ID it belongs to; null if it would not validate. */
export function audienceValue(audience, uid) {
  const source = audience.source === "kv" ? "k" : "r";
  const value = `${AUDIENCE_FORMAT}.${audience.country}.${audience.lang}.${audience.bucket}.` +
    `${source}.${uidTag(uid)}`;
  return AUDIENCE_RE.test(value) ? value : null;
}

/**
 * The audience an es_aud cookie carries for this visitor ID: exactly one cookie of that name,
 * a value that fullmatches, a tag of this ID; anything else is null (the profile is read).
 */
export function readAudience(cookie, name, uid) {
  if (!cookie) return null;
  let found = null;
  for (const part of cookie.slice(0, 16384).split(";")) {
    const eq = part.indexOf("=");
    if (eq >= 0 && part.slice(0, eq).trim() === name) {
      if (found !== null) return null; // two or more: ignored
      found = part.slice(eq + 1).trim().replace(/^"+|"+$/g, "");
    }
  }
  const m = found === null ? null : AUDIENCE_RE.exec(found);
  if (m === null || m[5] !== uidTag(uid)) return null;
  return { country: m[1], lang: m[2], bucket: m[3], source: m[4] === "k" ? "kv" : "request" };
}

/** Whether the Cookie header names this cookie at all (valid value or not). */
export function hasCookie(cookie, name) {
  if (!cookie) return false;
  return cookie.slice(0, 16384).split(";").some((part) => {
    const eq = part.indexOf("=");
    return eq >= 0 && part.slice(0, eq).trim() === name;
  });
}

export function bestLanguage(header) {
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

export const escapeHtml = (s) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#x27;");

export function scriptHtml(shelf) {
  const payload = JSON.stringify({
    ids: shelf.ids, segment: shelf.segment, fallback: shelf.fallback, schema: shelf.schema,
  }).replace(/[<>&\u0080-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return `<script type="application/json" id="edgeshelf-shelf">${payload}</script>`;
}

export function cardsHtml(ids) {
  let items = "";
  for (const vid of ids) {
    const v = escapeHtml(vid);
    items += `<li class="card"><a href="/watch/${v}"><div class="thumb">${v}</div>` +
      `<span>Video ${v}</span></a></li>`;
  }
  return '<h2 id="shelf-title">Picked for you</h2>' +
    `<ul class="row es-rendered" id="edgeshelf-cards">${items}</ul>`;
}

/** An integer [vars] value clamped to lo..hi, or the default. */
export function intVar(raw, dflt, lo, hi) {
  if (raw === undefined || raw === null) return dflt;
  const v = Number.parseInt(String(raw), 10);
  return Number.isNaN(v) ? dflt : Math.min(Math.max(v, lo), hi);
}

// --- plumbing both peers share -----------------------------------------------------------------

export function loadConfig(env) {
  const cookieName = isStr(env.COOKIE_NAME) && COOKIE_NAME_RE.test(env.COOKIE_NAME)
    ? env.COOKIE_NAME : "es_uid";
  const audienceCookie = isStr(env.AUDIENCE_COOKIE) && COOKIE_NAME_RE.test(env.AUDIENCE_COOKIE)
    ? env.AUDIENCE_COOKIE : "es_aud";
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
    audienceCookie,
    // 0 turns the audience cookie off: a profile read per request, as before issue 14.
    audienceTtl: intVar(env.AUDIENCE_TTL, AUDIENCE_TTL_DEFAULT, 0, COOKIE_MAX_AGE),
    schema,
    originUrl,
    paths,
    kvCacheTtl: intVar(env.KV_CACHE_TTL, 60, 30, 86400),
    originTimeoutMs: intVar(env.ORIGIN_TIMEOUT_MS, 1500, 50, 30000),
    debugHeaders: ["1", "true", "yes"].includes(String(env.DEBUG_HEADERS)),
    pointerTtlMs: intVar(env.SHELL_POINTER_TTL, 10, 0, 300) * 1000,
    segmentMemoTtlMs: intVar(env.SEGMENT_MEMO_TTL, 10, 0, 300) * 1000,
  };
}

export function kvRead(record, outcome) {
  record.kv_reads += 1;
  if (outcome !== "hit") record.kv_misses += 1;
}

export function unavailable(status = 503) {
  return new Response(UNAVAILABLE_PAGE, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "retry-after": "30",
    },
  });
}

export const round3 = (x) => Math.round(x * 1000) / 1000;

export async function fill(iso, ctx, cacheKey, name, version, path, errors) {
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
