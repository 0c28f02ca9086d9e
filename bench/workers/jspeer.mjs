// The JavaScript peer: edgeshelf's read path written in JavaScript with the same algorithm, for
// the edge benchmark (the like-for-like "equivalent JavaScript Worker"). Same configuration
// ([vars]), same KV reads in the same order (profile and shell pointer together, then the
// segment fallback chain one read at a time), same validation of what KV returns, same cache
// key and fill, same response headers and bodies, the same one JSON log line per request,
// and the same isolate memory as edgeshelf's Worker (src/edgeshelf/handler.py, shell.py):
//  - segment values (or their absence) are kept SEGMENT_MEMO_TTL seconds, at most 1024 keys;
//    a memo answer is not a KV read and counts in `memo_reads`; read errors are not kept;
//  - the shell pointer is kept SHELL_POINTER_TTL seconds (a failed read keeps the last good
//    one), and so is the shell itself, split around its first slot by two HTMLRewriter passes
//    (checked, else the rewriter runs per request), as Blobs: a request on a kept shell makes
//    no Cache API read and no HTML parse, its page is one Blob of the shell's parts and the
//    shelf's (prepared once per segment value). SHELL_POINTER_TTL=0 keeps nothing: Cache API
//    read and HTMLRewriter per request.
// The shell comes from isolate memory, the Cache API, the version's copy in KV (`kv-copy`) or
// the origin, in that order, and the origin's own headers (CSP, HSTS, ...) travel with it from
// every source (jscommon.mjs fill, keptHeaders). Crawlers get the global shelf and no cookie;
// Sec-GPC clears an es_uid the browser still sends.
// And the audience cookie of issue 14: a visitor whose profile was read (or who was just given
// an ID) gets `es_aud` with the audience chosen and a tag of the ID, and `es_uid` again with a
// fresh 400 days; a request carrying a valid ID and a matching es_aud reads no profile and gets
// no Set-Cookie. AUDIENCE_TTL=0 turns it off (the benchmark does so while edgeshelf's Worker
// issues no es_aud: bench/edge.mjs --audience-ttl).
// bench/workers/jsnaive.mjs keeps the read path as a JavaScript team would first write it.
// It is not shipped; it exists so the benchmark compares like with like.

import {
  SEGMENT_PREFIX,
  SHELL_PREFIX,
  USER_PREFIX,
  COOKIE_MAX_AGE,
  LEVELS,
  SLOT_SELECTOR,
  RENDER_ATTR,
  ORIGIN_RE,
  NO_POINTER_VERSION,
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
  cookieHeader,
  readAudience,
  audienceValue,
} from "./jscommon.mjs";


// --- isolate memory ---------------------------------------------------------------------------

const SEGMENT_MEMO_SIZE = 1024; // segment values (or their absence) per isolate
const SHELF_MEMO_SIZE = 512; // shelves prepared for injection, per (level, segment key)
const PREPARED_MEMO_SIZE = 4; // shells kept split around their slot
const PAGE_BUDGET_CHARS = 8 * 1024 * 1024; // finished pages a kept shell holds, in characters
const HTML = { html: true };

/** Values kept `ttlMs`, at most `maxSize` (the oldest stored goes first); ttl 0 keeps nothing. */
class TtlMemo {
  constructor(ttlMs, maxSize) {
    this.ttlMs = Math.max(0, ttlMs);
    this.maxSize = maxSize;
    this.entries = new Map(); // insertion order: the first key is the oldest stored
  }

  get enabled() {
    return this.ttlMs > 0;
  }

  /** The entry ({value, expires}) while it is fresh, else undefined (a stale one is dropped). */
  get(key, now) {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires > now) return entry;
    this.entries.delete(key);
    return undefined;
  }

  /** The entry, fresh or not, kept for another TTL (a value confirmed unchanged elsewhere). */
  renew(key, now) {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.put(key, entry.value, now);
    return this.entries.get(key);
  }

  put(key, value, now) {
    if (!this.ttlMs) return;
    const entries = this.entries;
    if (entries.has(key)) entries.delete(key); // set below: it is now the newest
    else if (entries.size >= this.maxSize) entries.delete(entries.keys().next().value);
    entries.set(key, { value, expires: now + this.ttlMs });
  }
}

/** A shelf ready to inject: HTML strings for HTMLRewriter, the same HTML as Blobs. */
function prepareShelf(shelf) {
  const script = scriptHtml(shelf);
  const cards = shelf.ids.length ? cardsHtml(shelf.ids) + script : null;
  return {
    shelf,
    script,
    cards,
    scriptBlob: new Blob([script]),
    cardsBlob: cards !== null ? new Blob([cards]) : null,
  };
}

/**
 * A shell version split around its first slot, as Blobs ready to concatenate: `page()` is byte
 * for byte what HTMLRewriter makes of the shell for that shelf (checked when it is split), built
 * once per shelf and kept within PAGE_BUDGET_CHARS, as edgeshelf does. `headers` holds the
 * page's response headers, the origin's kept ones first, built once per shell version.
 */
class PreparedShell {
  constructor(parts, text, cardsSlot, contentType, headers, needsRewriter = false) {
    this.contentType = contentType;
    this.headers = headers;
    this.cardsSlot = cardsSlot;
    this.needsRewriter = needsRewriter; // a split not to be trusted: kept whole, rewritten
    this.pages = new Map(); // shelf object -> finished page Blob, oldest first
    this.maxPages = Math.max(1, Math.floor(PAGE_BUDGET_CHARS / Math.max(1, text.length)));
    if (parts === null) { // no slot, or a split not to be trusted: the shell as it is
      this.whole = new Blob([text]);
      this.before = this.beforeInner = this.after = null;
    } else {
      const [before, inner, after] = parts;
      this.whole = null;
      this.before = new Blob([before]);
      this.beforeInner = new Blob([this.before, inner]);
      this.after = new Blob([after]);
    }
  }

  page(shelf) {
    if (this.whole !== null) return this.whole;
    let page = this.pages.get(shelf);
    if (page === undefined) {
      if (this.pages.size >= this.maxPages) this.pages.delete(this.pages.keys().next().value);
      page = shelf.cardsBlob !== null && this.cardsSlot
        ? new Blob([this.before, shelf.cardsBlob, this.after])
        : new Blob([this.beforeInner, shelf.scriptBlob, this.after]);
      this.pages.set(shelf, page);
    }
    return page;
  }
}

/** The shell after one HTMLRewriter pass whose handler sees only the first slot. */
function rewriteFirstSlot(text, onFirst) {
  let done = false;
  return new HTMLRewriter().on(SLOT_SELECTOR, {
    element(el) {
      if (done) return;
      done = true;
      onFirst(el);
    },
  }).transform(new Response(text)).text();
}

const countIs1 = (text, mark) => {
  const at = text.indexOf(mark);
  return at >= 0 && text.indexOf(mark, at + mark.length) < 0;
};

/**
 * [before, inner, after] of the first slot from the two passes (see inject.split_marked): each
 * marker exactly once and in order, and the replacing pass agrees; else null.
 */
function splitMarked(prepended, replaced, [start, end, innerMark]) {
  if (!countIs1(prepended, start) || !countIs1(prepended, end)) return null;
  const s = prepended.indexOf(start);
  const e = prepended.indexOf(end);
  if (e < s + start.length) return null;
  const before = prepended.slice(0, s);
  const inner = prepended.slice(s + start.length, e);
  const after = prepended.slice(e + end.length);
  if (replaced !== before + innerMark + after) return null;
  return [before, inner, after];
}

// --- per isolate ------------------------------------------------------------------------------

class Isolate {
  constructor(env) {
    const config = loadConfig(env);
    this.config = config;
    this.kv = env.EDGESHELF_KV;
    this.textOpts = { type: "text", cacheTtl: config.kvCacheTtl };
    this.pointers = new Map(); // shell name -> [version, path, expiresAt]
    this.segments = new TtlMemo(config.segmentMemoTtlMs, SEGMENT_MEMO_SIZE);
    this.shelves = new Map(); // `${level}:${segment key}` -> {text, prepared | null}
    this.noShelf = prepareShelf({ ids: [], segment: "", fallback: 3, schema: config.schema });
    this.prepared = new TtlMemo(config.pointerTtlMs, PREPARED_MEMO_SIZE);
    this.preparing = new Set(); // shells being split right now (one request per version)
    const nonce = crypto.randomUUID().replaceAll("-", "");
    this.markers = [
      `<!--edgeshelf-split-${nonce}-start-->`,
      `<!--edgeshelf-split-${nonce}-end-->`,
      `<!--edgeshelf-split-${nonce}-inner-->`,
    ];
  }

  /** The prepared shelf of a segment value (null if invalid or empty), built once per value. */
  shelf(level, segment, key, text) {
    const memoKey = `${level}:${key}`;
    const known = this.shelves.get(memoKey);
    if (known !== undefined && known.text === text) return known.prepared;
    const decoded = decodeSegment(text, this.config.schema);
    const prepared = decoded !== null && decoded.ids.length
      ? prepareShelf({ ids: decoded.ids, segment, fallback: level, schema: this.config.schema })
      : null;
    if (known !== undefined) this.shelves.delete(memoKey);
    else if (this.shelves.size >= SHELF_MEMO_SIZE) this.shelves.delete(this.shelves.keys().next().value);
    this.shelves.set(memoKey, { text, prepared });
    return prepared;
  }

  /** Split a shell around its slot and keep it (whole, to be rewritten, if not trusted). */
  async prepareShell(key, text, contentType, headers) {
    const [start, end, innerMark] = this.markers;
    let slot = false;
    let cards = false;
    const prepended = await rewriteFirstSlot(text, (el) => {
      slot = true;
      cards = el.getAttribute(RENDER_ATTR) === "cards";
      el.prepend(start, HTML);
      el.append(end, HTML);
    });
    let parts = null; // no slot: served as it is
    if (slot) {
      const replaced = await rewriteFirstSlot(text, (el) => el.setInnerContent(innerMark, HTML));
      parts = splitMarked(prepended, replaced, this.markers);
    }
    const shell = new PreparedShell(parts, text, cards, contentType,
      pageHeaders(contentType, headers, this.config.rules), slot && parts === null);
    this.prepared.put(key, shell, Date.now());
    return shell;
  }
}

let ISO = null;
function isolate(env) {
  if (ISO === null) ISO = new Isolate(env);
  return ISO;
}

// --- the handler ------------------------------------------------------------------------------

function newRecord() {
  return {
    event: "edgeshelf.request", method: "GET", path: "/", visitor: "none", bot: false,
    profile: "none", profile_read: "skipped", audience: "request", segment: "", fallback: 3,
    segment_reads: [], kv_reads: 0, kv_misses: 0, memo_reads: 0, shell: "none",
    shell_version: "", status: 200, kv_ms: 0, shell_ms: 0, total_ms: 0, errors: [],
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
      response = await personalize(iso, request, ctx, url, shellName, record);
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

async function personalize(iso, request, ctx, url, shellName, record) {
  const cfg = iso.config;
  const headers = request.headers;

  // 1. Identity: a crawler, GPC (no persistent ID), a returning ID, or a new one.
  const who = identify(headers, request.cf, cfg.cookieName, cfg.rules, cfg.audienceCookie);
  const uid = who.uid;
  const cookies = [...who.cookies];
  record.visitor = who.kind;
  record.bot = who.kind === "bot";
  // A matching audience cookie stands in for the profile until it expires.
  const fromCookie = who.kind === "cookie" && cfg.audienceTtl > 0
    ? readAudience(headers.get("cookie"), cfg.audienceCookie, uid) : null;

  // 2. The independent reads together: the profile, and the shell (pointer, kept copy, cache).
  const profilePromise = who.kind === "cookie" && fromCookie === null
    ? iso.kv.get(USER_PREFIX + uid, iso.textOpts) : null;
  const pointerPromise = pointerFresh(iso, shellName, Date.now())
    ? null : iso.kv.get(SHELL_PREFIX + shellName, iso.textOpts);
  const keptPrefix = `${url.origin}\n${shellName}\n`;
  let version, shellPath, keptKey, kept;
  let cacheKey = "";
  let cachePromise = null;
  const resolve = (renew) => {
    [version, shellPath] = currentPointer(iso, shellName, url.pathname);
    keptKey = keptPrefix + version;
    // A version its pointer names again is kept without reading and splitting it again.
    kept = (renew && version !== NO_POINTER_VERSION
      ? iso.prepared.renew(keptKey, Date.now())
      : iso.prepared.get(keptKey, Date.now()))?.value;
    if (kept === undefined) {
      const origin = ORIGIN_RE.test(url.origin) ? url.origin : "https://edgeshelf.invalid";
      cacheKey = `${origin}/__edgeshelf/shell/${encodeURIComponent(shellName)}/${encodeURIComponent(version)}`;
      cachePromise = caches.default.match(cacheKey);
    }
  };
  if (pointerPromise === null) resolve(false);

  // 3. Profile (or audience cookie) -> audience -> segment chain. A failure here costs the
  //    shelf, not the page. Crawlers always get the global chain.
  const kvStarted = performance.now();
  let chain = GLOBAL_CHAIN;
  if (!record.bot) {
    let audience;
    let profileRead = false; // the profile's read completed: found, missing or invalid
    try {
      let profileText = null;
      if (profilePromise !== null) {
        let failed = false;
        try {
          const value = await profilePromise;
          profileText = isStr(value) ? value : null;
        } catch (err) {
          failed = true;
          record.errors.push(`kv-profile: ${err?.name ?? "Error"}`);
        }
        kvRead(record, profileText !== null ? "hit" : "miss");
        record.profile_read = profileText === null ? "miss" : "hit";
        profileRead = !failed;
      }
      audience = fromCookie ?? audienceFor(
        profileText, request.cf?.country, headers.get("accept-language"));
      if (profileText !== null && audience.source !== "kv") record.profile_read = "invalid";
    } catch (err) {
      record.errors.push(`profile: ${err?.name ?? "Error"}`);
      audience = audienceFor(null, null, null);
      profileRead = false;
    }
    record.profile = audience.source;
    record.audience = fromCookie !== null ? "cookie" : audience.source;
    chain = chainFor(audience);
    // Issue (or renew) the audience cookie: for a new ID, or a profile read for a known one,
    // with a rolling es_uid (a new ID's was set by identify) before it.
    if (uid !== null && (who.kind === "minted" || profileRead) && cfg.audienceTtl > 0) {
      const value = audienceValue(audience, uid);
      if (value !== null) {
        if (who.kind !== "minted") cookies.push(cookieHeader(cfg.cookieName, uid, COOKIE_MAX_AGE));
        cookies.push(cookieHeader(cfg.audienceCookie, value, cfg.audienceTtl));
      }
    }
  }

  if (pointerPromise !== null) {
    await readPointer(iso, shellName, pointerPromise, record);
    resolve(true);
  }

  let prepared;
  try {
    prepared = await shelfFor(iso, chain, record);
  } catch (err) {
    record.errors.push(`segment: ${err?.name ?? "Error"}`);
    record.segment = "";
    record.fallback = 3;
    prepared = iso.noShelf;
  }
  const shelf = prepared.shelf;
  record.kv_ms = performance.now() - kvStarted;

  // 4. The shell: the isolate's kept copy, else the cache, else the version's copy in KV or the
  //    origin (filled into the cache via waitUntil), split and kept for the next requests.
  const shellStarted = performance.now();
  let shell;
  if (kept !== undefined) {
    shell = { body: null, contentType: kept.contentType, source: "memory" };
  } else {
    // One request per version splits it; the others stream the cached shell meanwhile.
    const claimed = iso.prepared.enabled && !iso.preparing.has(keptKey);
    if (claimed) iso.preparing.add(keptKey);
    try {
      shell = await shellFor(iso, ctx, cachePromise, cacheKey, shellName, version, shellPath,
        record, claimed);
      if (claimed && shell !== null && isStr(shell.body)) kept = await keep(iso, keptKey, shell, record);
    } finally {
      if (claimed) iso.preparing.delete(keptKey);
    }
  }
  record.shell_ms = performance.now() - shellStarted;
  if (shell === null) return unavailable();
  record.shell = shell.source;
  record.shell_version = version;

  // 5. Inject and answer: the shell's headers (the origin's kept ones, then edgeshelf's).
  const out = new Headers(kept !== undefined
    ? kept.headers : pageHeaders(shell.contentType, shell.headers, cfg.rules));
  out.set("server-timing",
    `kv;dur=${record.kv_ms.toFixed(2)}, shell;dur=${record.shell_ms.toFixed(2)};desc=${shell.source}`);
  for (const c of cookies) out.append("set-cookie", c); // edgeshelf's own, never the origin's
  if (cfg.debugHeaders) {
    out.set("x-edgeshelf-debug",
      `segment=${shelf.segment}; fallback=${LEVELS[shelf.fallback]}; shell=${shell.source}`);
  }
  const head = record.method === "HEAD";
  let body = null;
  if (kept !== undefined && !head) {
    body = kept.page(prepared);
  }
  else if (!head) body = shell.body;
  const base = new Response(body, { headers: out });
  if (head || (kept !== undefined && !kept.needsRewriter)) return base;
  let done = false;
  return new HTMLRewriter().on(SLOT_SELECTOR, {
    element(el) {
      if (done) return;
      done = true;
      if (prepared.cards !== null && el.getAttribute(RENDER_ATTR) === "cards") {
        el.setInnerContent(prepared.cards, HTML);
      } else {
        el.append(prepared.script, HTML);
      }
    },
  }).transform(base);
}

/** The segment chain's first valid, non-empty segment, from isolate memory or KV. */
async function shelfFor(iso, chain, record) {
  const schema = iso.config.schema;
  for (const [level, seg] of chain) {
    const key = `${SEGMENT_PREFIX}${seg}:${schema}`;
    const remembered = iso.segments.get(key, Date.now());
    let text = null;
    if (remembered !== undefined) {
      text = remembered.value;
      record.memo_reads += 1;
    } else {
      try {
        const value = await iso.kv.get(key, iso.textOpts);
        text = isStr(value) ? value : null;
        iso.segments.put(key, text, Date.now());
      } catch (err) { // not kept: the next request tries KV again
        record.errors.push(`kv-segment: ${err?.name ?? "Error"}`);
        text = null;
      }
    }
    const prepared = text !== null ? iso.shelf(level, seg, key, text) : null;
    const outcome = prepared !== null ? "hit" : text === null ? "miss" : "invalid";
    if (remembered === undefined) kvRead(record, outcome);
    record.segment_reads.push(outcome);
    if (prepared !== null) {
      record.segment = seg;
      record.fallback = level;
      return prepared;
    }
  }
  record.segment = "";
  record.fallback = 3;
  return iso.noShelf;
}

/** The shell from the Cache API, else the version's copy or the origin; whole when to be split. */
async function shellFor(iso, ctx, cachePromise, cacheKey, name, version, path, record, whole) {
  const cached = await fromCache(cachePromise, whole, iso.config.rules, record.errors);
  return cached ?? fill(iso, ctx, cacheKey, name, version, path, record.errors);
}

/** Keep a shell split around its slot; on any trouble this request uses the rewriter. */
async function keep(iso, key, shell, record) {
  let kept;
  try {
    kept = await iso.prepareShell(key, shell.body, shell.contentType, shell.headers);
  } catch (err) {
    record.errors.push(`shell-split: ${err?.name ?? "Error"}`);
    return undefined;
  }
  if (kept.needsRewriter) { // logged once per version and TTL, not per request
    record.errors.push("shell-split: split not trusted, injecting per request");
  }
  return kept;
}
