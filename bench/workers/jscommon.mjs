// What the JavaScript peers (bench/workers/jspeer.mjs, jsnaive.mjs) share: edgeshelf's rules
// (the KV key schema and payload validation of src/edgeshelf/schema.py, the request signals of
// identity.py, crawlers.py and profile.py, the escaping of inject.py, the shell's sources of
// shell.py) and the plumbing around the read path (configuration from [vars], the cache fill
// from the version's copy in KV or the origin, the 503 page), written once in JavaScript so both
// peers validate, configure and render exactly alike. Benchmark code only; the Worker's own
// definition is the Python package.
//
// Two kinds of shared constants:
//  - the lists and limits that are edgeshelf's policy (origin headers dropped from a shell, the
//    crawlers, the shell copy's format, the shell's cache lifetimes, a page's own headers) are
//    not copied here: the benchmark dumps them from Python (bench/peer_rules.py) into the
//    peers' EDGESHELF_RULES binding, read once per isolate by loadRules();
//  - the key and payload formats below (regular expressions, sizes) are JavaScript copies,
//    compared with the Python definitions by tests/bench/test_peer_rules.py.
// Where Python's string and number semantics differ from JavaScript's (str.strip, float(),
// len() in code points, json's ints vs floats), the helpers below follow Python's. Left
// different, as no writer of edgeshelf's keys produces them: JSON's NaN and Infinity (Python
// reads them, JSON.parse refuses), nesting deeper than Python's recursion limit, and non-ASCII
// digits in a q-value or a [vars] number.
// A variant of a peer (bench/ab.mjs --jsb, bench/ablations.mjs) needs this file beside it.

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
export const MAX_COOKIE_SCAN = 16384;
export const MAX_LANG_ENTRIES = 32;
export const MAX_POINTER_PATH = 256;
export const COOKIE_MAX_AGE = 400 * 24 * 60 * 60;
export const COOKIE_ATTRIBUTES = "Path=/; HttpOnly; Secure; SameSite=Lax";
export const AUDIENCE_FORMAT = "a1";
export const AUDIENCE_TTL_DEFAULT = 3600;
export const HTML_TYPE = "text/html; charset=utf-8";
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
export const UNAVAILABLE_PAGE =
  "<!doctype html><html lang=en><meta charset=utf-8><title>Back soon</title>" +
  "<h1>We'll be right back</h1><p>This page is briefly unavailable. Please retry in a minute.";
const ORIGIN_REQUEST_HEADERS = { accept: "text/html", "user-agent": "edgeshelf-worker" };

// --- Python's semantics, where edgeshelf's rules depend on them --------------------------------

// str.strip() removes what str.isspace() calls whitespace, which is not quite trim()'s set.
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029" +
  "\\u202f\\u205f\\u3000";
const PY_STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
const PY_LEADING_SPACE_RE = new RegExp(`^[${PY_SPACE}]*`);
/** Python's `s.strip()`. */
export const pyStrip = (s) => s.replace(PY_STRIP_RE, "");

/** Python's `len(s)`: code points, where `s.length` counts UTF-16 units. */
export function cpLen(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** `len(s) <= limit` in Python's terms (cheap unless the UTF-16 length is over the limit). */
export const withinChars = (s, limit) => s.length <= limit || cpLen(s) <= limit;

// float(): decimal literals with single underscores between digits; inf and nan by name.
const PY_FLOAT_RE =
  /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
const PY_FLOAT_WORD_RE = /^([+-]?)(?:(inf|infinity)|nan)$/i;
/** Python's `float(s)`, or null where it raises ValueError. */
export function pyFloat(s) {
  s = pyStrip(s);
  if (PY_FLOAT_RE.test(s)) return Number(s.replaceAll("_", ""));
  const word = PY_FLOAT_WORD_RE.exec(s);
  if (word === null) return null;
  if (word[2] === undefined) return Number.NaN;
  return word[1] === "-" ? -Infinity : Infinity;
}

/** Python's `int(s)` for a [vars] value, or null where it raises ValueError. */
export function pyInt(s) {
  s = pyStrip(String(s));
  return /^[+-]?\d(?:_?\d)*$/.test(s) ? Number.parseInt(s.replaceAll("_", ""), 10) : null;
}

export const isInt = (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 53;
export const isStr = (v) => typeof v === "string";

/**
 * JSON.parse as Python's json.loads reads the numbers at `intKeys`: `1.0` and `1e0` are floats
 * there, which schema._is_int refuses, while JSON.parse makes them 1. Such a number comes back
 * wrapped in an object, so no integer check passes it. The reviver sees the literal's source
 * in workerd (V8's JSON.parse source text access; Node 20 lacks it, and there the peers would
 * read `1.0` as 1).
 */
function intAware(intKeys) {
  return function reviver(key, value, context) {
    if (typeof value === "number" && intKeys.has(key) && context !== undefined &&
        !/^-?\d+$/.test(context.source)) {
      return { notAnInt: value };
    }
    return value;
  };
}
const PROFILE_INT_KEYS = intAware(new Set(["fv"]));
const SEGMENT_INT_KEYS = intAware(new Set(["built_at", "version"]));

/** schema._loads_object: a JSON object within `limit` characters, else null. */
export function loadsObject(text, limit, reviver = undefined) {
  if (!isStr(text) || !text || !withinChars(text, limit)) return null;
  try {
    const v = JSON.parse(text, reviver);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

// --- the rules fed from Python (bench/peer_rules.py) -------------------------------------------

const escapeRegExp = (s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");

/**
 * The EDGESHELF_RULES binding, made ready once per isolate. Without it the peer cannot answer
 * like edgeshelf, so it refuses to start (every request then gets the 503 page, and the parity
 * check says so) rather than guess.
 */
export function loadRules(env) {
  let raw = env.EDGESHELF_RULES;
  if (isStr(raw)) raw = JSON.parse(raw);
  if (raw === undefined || raw === null || !Array.isArray(raw.dropped_headers)) {
    throw new Error("EDGESHELF_RULES is missing: start the peer through bench/lib/targets.mjs");
  }
  const [ctName] = raw.page_headers[0];
  return {
    dropped: new Set(raw.dropped_headers),
    headerNameRe: new RegExp(`^(?:${raw.header_name_pattern})$`),
    maxShellHeaders: raw.max_shell_headers,
    maxHeaderValue: raw.max_header_value,
    shellCopyFormat: raw.shell_copy_format,
    maxShellCopyBytes: raw.max_shell_copy_bytes,
    maxPointerBytes: raw.max_pointer_bytes,
    // crawlers._CRAWLER_RE: any token, case-insensitively (`u`: Unicode case folding, as re's).
    crawlerRe: new RegExp(raw.crawler_tokens.map(escapeRegExp).join("|"), "iu"),
    maxUaScan: raw.max_ua_scan,
    cacheControlPinned: raw.cache_control_pinned,
    cacheControlUnpinned: (ttl) => raw.cache_control_unpinned.replace("{ttl}", String(ttl)),
    noPointerShellTtl: raw.no_pointer_shell_ttl,
    // shellrules.page_headers after the shell's own: content type (first), then the fixed ones.
    pageHeadersAfter: raw.page_headers.slice(1),
    contentTypeHeader: ctName,
  };
}

/** schema.kept_headers: the origin's headers that travel with its page (names lower-cased). */
export function keptHeaders(pairs, rules) {
  const items = [];
  for (const [n, v] of pairs) {
    if (isStr(n)) items.push([pyStrip(n).toLowerCase(), v]);
  }
  let dropped = rules.dropped;
  for (const [name, value] of items) {
    if (name === "connection" && isStr(value)) {
      if (dropped === rules.dropped) dropped = new Set(dropped);
      for (const token of value.split(",")) dropped.add(pyStrip(token).toLowerCase());
    }
  }
  const kept = [];
  for (const [name, value] of items) {
    if (
      dropped.has(name) || !rules.headerNameRe.test(name) || !isStr(value) ||
      !withinChars(value, rules.maxHeaderValue) || /[\r\n\0]/.test(value)
    ) {
      continue;
    }
    kept.push([name, pyStrip(value)]);
    if (kept.length === rules.maxShellHeaders) break;
  }
  return kept;
}

/** shellrules.page_headers: the shell's kept headers, then the ones edgeshelf sets. */
export const pageHeaders = (contentType, kept, rules) =>
  [...kept, [rules.contentTypeHeader, contentType], ...rules.pageHeadersAfter];

/** crawlers.is_crawler: a known crawler by User-Agent, or one Cloudflare verified. */
export function isCrawler(userAgent, verifiedBot, rules) {
  if (verifiedBot) return true;
  return userAgent !== null && rules.crawlerRe.test(userAgent.slice(0, rules.maxUaScan));
}

// --- pure helpers (mirrors of edgeshelf.schema / profile / identity / inject) ----------------

export function normalizeCountry(v) {
  if (isStr(v)) {
    v = pyStrip(v).toLowerCase();
    if (COUNTRY_RE.test(v)) return v;
  }
  return UNKNOWN;
}

export function normalizeLang(v) {
  if (isStr(v)) {
    v = pyStrip(v).toLowerCase().replaceAll("_", "-").split("-", 1)[0];
    if (LANG_RE.test(v)) return v;
  }
  return UNKNOWN;
}

export function normalizeBucket(v) {
  if (isStr(v)) {
    v = pyStrip(v).toLowerCase().replace(BUCKET_JUNK_RE, "_").replace(/^_+|_+$/g, "");
    v = v.slice(0, 32).replace(/_+$/, "");
    if (v) return v;
  }
  return DEFAULT_BUCKET;
}

export const segmentId = (c, l, b) => `${normalizeCountry(c)}-${normalizeLang(l)}-${normalizeBucket(b)}`;

/** schema._stored_part: a stored country or language, or null when missing or not one at all. */
function storedPart(raw, normalise) {
  const part = normalise(raw);
  if (part === UNKNOWN && !(isStr(raw) && pyStrip(raw).toLowerCase() === UNKNOWN)) return null;
  return part;
}

/**
 * schema.read_profile: any JSON object within MAX_PROFILE_BYTES whose `fv` is 1 or absent, its
 * parts normalised field by field ({country|null, lang|null, bucket}); null for anything else.
 */
export function readProfile(text) {
  const o = loadsObject(text, MAX_PROFILE_BYTES, PROFILE_INT_KEYS);
  if (o === null) return null;
  const fv = Object.hasOwn(o, "fv") ? o.fv : PROFILE_FORMAT;
  if (!isInt(fv) || fv !== PROFILE_FORMAT) return null;
  return {
    country: storedPart(o.country, normalizeCountry),
    lang: storedPart(o.lang, normalizeLang),
    bucket: normalizeBucket(o.affinity_bucket),
  };
}

/** profile.best_language: the primary subtag of the highest-q language, first wins ties. */
export function bestLanguage(header) {
  if (!header) return UNKNOWN;
  let best = UNKNOWN;
  let bestQ = 0;
  for (const entry of header.slice(0, 2048).split(",").slice(0, MAX_LANG_ENTRIES)) {
    const semi = entry.indexOf(";");
    const tag = pyStrip(semi < 0 ? entry : entry.slice(0, semi));
    if (!tag || tag === "*") continue;
    let q = 1;
    const params = semi < 0 ? "" : pyStrip(entry.slice(semi + 1));
    if (params) {
      const eq = params.indexOf("=");
      const name = eq < 0 ? params : params.slice(0, eq);
      if (pyStrip(name).toLowerCase() !== "q") continue;
      q = pyFloat(eq < 0 ? "" : params.slice(eq + 1));
      if (q === null || !(q >= 0 && q <= 1)) continue;
    }
    const lang = normalizeLang(tag);
    if (lang !== UNKNOWN && q > bestQ) {
      best = lang;
      bestQ = q;
    }
  }
  return best;
}

/**
 * profile.audience_for: the stored profile's parts where it has them, the request's signals
 * (request.cf.country, Accept-Language) for the rest; {country, lang, bucket, source}.
 */
export function audienceFor(profileText, country, acceptLanguage) {
  const stored = profileText !== null ? readProfile(profileText) : null;
  if (stored === null) {
    return {
      country: normalizeCountry(country), lang: bestLanguage(acceptLanguage),
      bucket: DEFAULT_BUCKET, source: "request",
    };
  }
  return {
    country: stored.country ?? normalizeCountry(country),
    lang: stored.lang ?? bestLanguage(acceptLanguage),
    bucket: stored.bucket,
    source: "kv",
  };
}

/** segments.chain_for: [level, segment id] for the exact, language default and global steps. */
export function chainFor(audience) {
  const exact = segmentId(audience.country, audience.lang, audience.bucket);
  const langDefault = segmentId(audience.country, audience.lang, DEFAULT_BUCKET);
  const chain = [[0, exact]];
  if (langDefault !== exact) chain.push([1, langDefault]);
  chain.push([2, GLOBAL_SEGMENT]);
  return chain;
}
// Crawlers always get the global shelf (a search engine sees the same page each time).
export const GLOBAL_CHAIN = [[2, GLOBAL_SEGMENT]];

export function decodeSegment(text, schema) {
  const o = loadsObject(text, MAX_SEGMENT_BYTES, SEGMENT_INT_KEYS);
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

export function decodeShellPointer(text, rules) {
  const o = loadsObject(text, rules.maxPointerBytes);
  if (o === null) return null;
  const { version, path } = o;
  if (!(isStr(version) && SHELL_VERSION_RE.test(version) && isStr(path))) return null;
  if (!(path.startsWith("/") && withinChars(path, MAX_POINTER_PATH) && !path.includes("\\") &&
      !path.includes("//"))) {
    return null;
  }
  return { version, path };
}

/**
 * schema.decode_shell_copy: {html, headers} of a version's copy, the `edgeshelf.shell/1`
 * envelope or (written before headers were kept) plain HTML; null when missing, empty,
 * oversized or not a copy.
 */
export function decodeShellCopy(text, rules) {
  if (!isStr(text) || !text) return null;
  if (text[PY_LEADING_SPACE_RE.exec(text)[0].length] !== "{") { // an HTML page never starts so
    return withinChars(text, MAX_SHELL_BYTES) ? { html: text, headers: [] } : null;
  }
  const o = loadsObject(text, rules.maxShellCopyBytes);
  if (o === null || o.format !== rules.shellCopyFormat) return null;
  const { html, headers } = o;
  if (!(isStr(html) && html.length > 0 && withinChars(html, MAX_SHELL_BYTES))) return null;
  const pairs = (Array.isArray(headers) ? headers : [])
    .filter((pair) => Array.isArray(pair) && pair.length === 2)
    .map((pair) => [pair[0], pair[1]]);
  return { html, headers: keptHeaders(pairs, rules) };
}

export const usableShell = (text) => isStr(text) && text.length > 0 && withinChars(text, MAX_SHELL_BYTES);

/** identity.cookie_values: every value the Cookie header gives `name`, in order. */
export function cookieValues(cookie, name) {
  if (!cookie) return [];
  const values = [];
  for (const part of cookie.slice(0, MAX_COOKIE_SCAN).split(";")) {
    const eq = part.indexOf("=");
    if (eq >= 0 && pyStrip(part.slice(0, eq)) === name) {
      values.push(pyStrip(part.slice(eq + 1)).replace(/^"+|"+$/g, ""));
    }
  }
  return values;
}

/** identity.read_uid: the first value of exactly the minted format. */
export const readUid = (cookie, name) =>
  cookieValues(cookie, name).find((v) => UID_RE.test(v)) ?? null;

/** `name=value; Max-Age=...` with the attributes every edgeshelf cookie carries. */
export const cookieHeader = (name, value, maxAge) =>
  `${name}=${value}; Max-Age=${maxAge}; ${COOKIE_ATTRIBUTES}`;

/**
 * identity.identify: {kind, uid, cookies}. A known crawler gets no ID and no cookie; Sec-GPC: 1
 * gets none either, and an ID (and audience cookie) the browser still sends is cleared; otherwise the ID cookie is
 * read strictly, or a new ID is minted and set.
 */
export function identify(headers, cf, cookieName, rules, audienceCookie = null) {
  const cookie = headers.get("cookie");
  if (isCrawler(headers.get("user-agent"), cf?.botManagement?.verifiedBot === true, rules)) {
    return { kind: "bot", uid: null, cookies: [] };
  }
  const gpc = headers.get("sec-gpc");
  if (gpc !== null && pyStrip(gpc) === "1") {
    // The ID and the audience cookie bound to it, whichever the browser still sends.
    const names = audienceCookie === null ? [cookieName] : [cookieName, audienceCookie];
    const cookies = names.filter((n) => cookieValues(cookie, n).length > 0)
      .map((n) => cookieHeader(n, "", 0));
    return { kind: "gpc", uid: null, cookies };
  }
  const uid = readUid(cookie, cookieName);
  if (uid === null) {
    const minted = crypto.randomUUID();
    return { kind: "minted", uid: minted, cookies: [cookieHeader(cookieName, minted, COOKIE_MAX_AGE)] };
  }
  return { kind: "cookie", uid, cookies: [] };
}

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
  const values = cookieValues(cookie, name);
  if (values.length !== 1) return null; // none, or two or more: ignored
  const m = AUDIENCE_RE.exec(values[0]);
  if (m === null || m[5] !== uidTag(uid)) return null;
  // Only parts the normalisers would produce (a bucket like "a__b" is not one).
  if (normalizeCountry(m[1]) !== m[1] || normalizeLang(m[2]) !== m[2]) return null;
  if (normalizeBucket(m[3]) !== m[3]) return null;
  return { country: m[1], lang: m[2], bucket: m[3], source: m[4] === "k" ? "kv" : "request" };
}

export const escapeHtml = (s) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#x27;");

export function scriptHtml(shelf) {
  const payload = JSON.stringify({
    ids: shelf.ids, segment: shelf.segment, fallback: shelf.fallback, schema: shelf.schema,
    // The peers run no experiment (the benchmark sets no exp:active): never enrolled.
    exp: null, arm: null,
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

/** config._int: an integer [vars] value clamped to lo..hi, or the default. */
export function intVar(raw, dflt, lo, hi) {
  if (raw === undefined || raw === null) return dflt;
  const v = pyInt(raw);
  return v === null ? dflt : Math.min(Math.max(v, lo), hi);
}

// --- plumbing both peers share -----------------------------------------------------------------

export function loadConfig(env) {
  const rules = loadRules(env);
  const cookieName = isStr(env.COOKIE_NAME) && COOKIE_NAME_RE.test(env.COOKIE_NAME)
    ? env.COOKIE_NAME : "es_uid";
  const audienceCookie = isStr(env.AUDIENCE_COOKIE) && COOKIE_NAME_RE.test(env.AUDIENCE_COOKIE)
    ? env.AUDIENCE_COOKIE : "es_aud";
  const schema = isStr(env.SEGMENT_SCHEMA) && SCHEMA_RE.test(env.SEGMENT_SCHEMA)
    ? env.SEGMENT_SCHEMA : "v3";
  let originUrl = isStr(env.ORIGIN_URL) ? env.ORIGIN_URL.replace(/\/+$/, "") : "";
  if (!originUrl.startsWith("https://") && !originUrl.startsWith("http://")) originUrl = "";
  const paths = new Map();
  const rawPaths = env.PERSONALIZED_PATHS;
  for (const raw of (rawPaths !== undefined && rawPaths !== null ? String(rawPaths) : "/").split(",")) {
    const item = pyStrip(raw);
    if (item && PATH_RE.test(item) && !item.includes("//")) {
      const name = item.replace(/^\/+|\/+$/g, "").replaceAll("/", "_").replaceAll("-", "_");
      paths.set(item, name ? name.slice(0, 32) : "home");
    }
  }
  if (paths.size === 0) paths.set("/", "home");
  return {
    rules,
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
    noPointerShellTtl: intVar(env.NO_POINTER_SHELL_TTL, rules.noPointerShellTtl, 0, 86400),
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

// --- the shell pointer, kept in isolate memory (shellrules.ShellPointerMemo) ---------------------

/** Whether the isolate's pointer for `name` is fresh (no KV read needed). */
export function pointerFresh(iso, name, now) {
  const entry = iso.pointers.get(name);
  return entry !== undefined && entry[2] > now;
}

/** [version, origin path] from the isolate's memory. */
export function currentPointer(iso, name, routePath) {
  const entry = iso.pointers.get(name);
  if (entry === undefined) return [NO_POINTER_VERSION, routePath];
  return [entry[0], entry[1] || routePath];
}

/**
 * Await a pointer read and remember it. Only a confirmed missing key means "no pointer": a read
 * that fails keeps the last good pointer for another TTL (a failing KV is not asked on every
 * request) and says so in the log.
 */
export async function readPointer(iso, name, promise, record) {
  let text;
  try {
    text = await promise;
  } catch (err) {
    const now = Date.now();
    const entry = iso.pointers.get(name);
    let kept = null;
    if (entry !== undefined) {
      iso.pointers.set(name, [entry[0], entry[1], now + iso.config.pointerTtlMs]);
      if (entry[0] !== NO_POINTER_VERSION) kept = entry[0];
    }
    kvRead(record, "error");
    record.errors.push(`kv-pointer: ${err?.name ?? "Error"}; ` +
      (kept !== null ? `kept version ${kept}` : "no earlier pointer"));
    return;
  }
  const now = Date.now();
  text = isStr(text) ? text : null;
  kvRead(record, text !== null ? "hit" : "miss");
  const pointer = decodeShellPointer(text, iso.config.rules);
  iso.pointers.set(name, pointer === null
    ? [NO_POINTER_VERSION, "", now + iso.config.pointerTtlMs]
    : [pointer.version, pointer.path, now + iso.config.pointerTtlMs]);
}

// --- the shell's sources: the Cache API, the version's copy in KV, the origin (shell.py) --------

/** A cached shell {body, contentType, headers, source}: read whole (to split) or streamed. */
export async function fromCache(cachePromise, whole, rules, errors) {
  try {
    const cached = await cachePromise;
    if (cached === undefined || cached === null) return null;
    const contentType = cached.headers.get("content-type") || HTML_TYPE;
    const headers = keptHeaders(cached.headers, rules);
    const body = whole ? await cached.text() : cached.body;
    return { body, contentType, headers, source: "cache" };
  } catch (err) { // a cache that fails is a cache that missed
    errors.push(`cache: ${err?.name ?? "Error"}`);
    return null;
  }
}

/**
 * A response's body as text, or null past `limit` bytes, whether or not it declares a length:
 * without one, the stream fails at the limit (which cancels the origin's answer).
 */
async function readBounded(resp, limit) {
  const length = resp.headers.get("content-length");
  if (length !== null && /^\d+$/.test(length)) {
    return Number(length) > limit ? null : await resp.text();
  }
  if (resp.body === null) return "";
  let seen = 0;
  let over = false;
  const capped = resp.body.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > limit) {
        over = true;
        controller.error(new Error("shell too large"));
      } else {
        controller.enqueue(chunk);
      }
    },
  }));
  try {
    return await new Response(capped).text();
  } catch (err) {
    if (over) return null;
    throw err;
  }
}

async function fromOrigin(cfg, path, errors) {
  let text;
  let headers;
  try {
    const resp = await fetch(cfg.originUrl + path, {
      headers: ORIGIN_REQUEST_HEADERS,
      signal: AbortSignal.timeout(cfg.originTimeoutMs),
      redirect: "follow",
    });
    if (resp.status !== 200) {
      errors.push(`origin: status ${resp.status}`);
      return null;
    }
    if (!(resp.headers.get("content-type") || "").toLowerCase().includes("text/html")) {
      errors.push("origin: not text/html");
      return null;
    }
    headers = keptHeaders(resp.headers, cfg.rules);
    text = await readBounded(resp, MAX_SHELL_BYTES);
  } catch (err) {
    errors.push(`origin: ${err?.name ?? "Error"}`);
    return null;
  }
  if (text === null || !usableShell(text)) {
    errors.push("origin: shell too large or empty");
    return null;
  }
  return { text, headers };
}

async function readCopy(iso, name, version, errors) {
  let text;
  try {
    text = await iso.kv.get(`${SHELL_PREFIX}${name}:${version}`, iso.textOpts);
  } catch (err) {
    errors.push(`kv-copy: ${err?.name ?? "Error"}`);
    return null;
  }
  const copy = decodeShellCopy(text, iso.config.rules);
  if (isStr(text) && copy === null) errors.push("kv-copy: not a usable shell");
  return copy;
}

/**
 * On a cache miss: the version's copy in KV (`kv-copy`), else the origin; then into the cache,
 * a year for a published version's copy (its content is tied to its label), NO_POINTER_SHELL_TTL
 * seconds (0: not at all) for the origin's current page. {body, contentType, headers, source}.
 */
export async function fill(iso, ctx, cacheKey, name, version, path, errors) {
  const cfg = iso.config;
  let copy = null;
  if (version !== NO_POINTER_VERSION) copy = await readCopy(iso, name, version, errors);
  let text;
  let headers;
  let source;
  if (copy !== null) {
    ({ html: text, headers } = copy);
    source = "kv-copy";
  } else {
    const fetched = cfg.originUrl ? await fromOrigin(cfg, path, errors) : null;
    if (fetched === null) return null;
    ({ text, headers } = fetched);
    source = "origin";
  }
  const pinned = source === "kv-copy";
  if (pinned || cfg.noPointerShellTtl > 0) {
    const cacheControl = pinned
      ? cfg.rules.cacheControlPinned : cfg.rules.cacheControlUnpinned(cfg.noPointerShellTtl);
    const cachedCopy = new Response(text, {
      headers: [...headers, ["content-type", HTML_TYPE], ["cache-control", cacheControl]],
    });
    ctx.waitUntil(caches.default.put(cacheKey, cachedCopy));
  }
  return { body: text, contentType: HTML_TYPE, headers, source };
}
