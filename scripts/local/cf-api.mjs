// The local Cloudflare v4 Workers KV API: the subset of api.cloudflare.com/client/v4 that the
// builder and the official `cloudflare` SDK use, served by a JavaScript Worker that is bound to
// the same KV namespaces as the Python Worker, so a write here is read there at once.
//
// Bindings (given by scripts/local/stack.mjs): each KV namespace under its binding name,
// CF_ACCOUNT_ID, CF_API_TOKEN, CF_NAMESPACES ({"<namespace id>": "<binding>"}), and optionally
// CF_API_DEFAULTS (JSON, the fault/limit knobs that /__edgeshelf/reset returns to).
//
// Control plane (same bearer token, never rate limited or faulted):
//   POST /__edgeshelf/faults  set the fault-injection and limit knobs (docs/local-api.md)
//   POST /__edgeshelf/reset   knobs back to their defaults, counters to zero
//   GET  /__edgeshelf/stats   counts by route, status and injected fault; writes and pairs
//   GET  /__edgeshelf/health  {"ok": true}, no token needed
//
// Module-level state (knobs, counters, rate windows) lives as long as the isolate, which is
// the life of the local stack.

const MiB = 1024 * 1024;
const LIMITS = Object.freeze({
  keyBytes: 512,
  valueBytes: 25 * MiB,
  metadataBytes: 1024,
  minTtl: 60,
  bulkPairs: 10_000,
  bulkBytes: 100 * 1000 * 1000, // "100 MB": the smaller reading, so we never accept more
  bulkGetKeys: 100,
  listMin: 10,
  listMax: 1000,
  multipartOverhead: 64 * 1024,
});
const WRITE_CONCURRENCY = 32;

// Error codes. 10000, 10001, 10009, 10013 and 971 are the real API's (seen in public client
// code and wrangler output); the others are plausible stand-ins in the same 10xxx family
// (docs/local-api.md lists which is which). Messages follow the KV service's own wording.
const CODE = Object.freeze({
  authentication: 10000,
  unauthenticated: 10001,
  keyNotFound: 10009,
  namespaceNotFound: 10013,
  invalidKey: 10019,
  keyTooLong: 10020,
  invalidExpiration: 10025,
  invalidMetadata: 10028,
  metadataTooLarge: 10029,
  valueTooLarge: 10033,
  invalidBody: 10026,
  bulkTooLarge: 10034,
  invalidLimit: 10037,
  invalidCursor: 10038,
  notText: 10039,
  keyWriteRate: 10429,
  rateLimited: 971,
  invalidHeaders: 6003,
  noRoute: 7000,
  methodNotAllowed: 7001,
  internal: 10002,
  unavailable: 10043,
});
const RATE_LIMIT_MESSAGE = "Please wait and consider throttling your request speed";

class ApiError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

const badRequest = (code, message) => new ApiError(400, code, message);

// --------------------------------------------------------------------------------------------
// Knobs, counters and the seeded generator.

const ROUTES = [
  "namespaces_list",
  "namespace_get",
  "values_get",
  "values_put",
  "values_delete",
  "metadata_get",
  "keys_list",
  "bulk_put",
  "bulk_delete",
  "bulk_get",
];

const BUILTIN_DEFAULTS = Object.freeze({
  rate429: 0,
  retry_after: 1,
  rate5xx: 0,
  status5xx: [500, 502, 503],
  delay_ms: 0,
  delay_rate: 0,
  drop_rate: 0,
  drop_phase: "random",
  partial_rate: 0,
  partial_share: 0.5,
  seed: 1,
  routes: null,
  deny_after: null,
  rate_limit: { requests: 1200, window_s: 300 },
  key_write_rate: true,
  key_write_interval_ms: 1000,
});

const RATE_KNOBS = ["rate429", "rate5xx", "delay_rate", "drop_rate", "partial_rate", "partial_share"];

/** Validate a knob object (POST /__edgeshelf/faults or CF_API_DEFAULTS) over `base`. */
function buildConfig(input, base) {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw badRequest(CODE.invalidBody, "fault settings must be a JSON object");
  }
  const out = { ...base };
  for (const [name, value] of Object.entries(input)) {
    if (!(name in BUILTIN_DEFAULTS)) {
      throw badRequest(CODE.invalidBody, `unknown fault setting ${JSON.stringify(name)}`);
    }
    const fail = (why) => badRequest(CODE.invalidBody, `fault setting ${name} ${why}`);
    if (RATE_KNOBS.includes(name)) {
      if (typeof value !== "number" || !(value >= 0 && value <= 1)) throw fail("must be in [0, 1]");
    } else if (["retry_after", "delay_ms", "key_write_interval_ms", "seed"].includes(name)) {
      if (!Number.isInteger(value) || value < 0 || (name === "delay_ms" && value > 120_000)) {
        throw fail("must be a non-negative integer (delay_ms at most 120000)");
      }
    } else if (name === "status5xx") {
      if (!Array.isArray(value) || !value.length || !value.every((s) => s >= 500 && s <= 599)) {
        throw fail("must be a non-empty list of 5xx statuses");
      }
    } else if (name === "drop_phase") {
      if (!["before", "after", "random"].includes(value)) throw fail("must be before|after|random");
    } else if (name === "routes") {
      if (value !== null && (!Array.isArray(value) || !value.every((r) => ROUTES.includes(r)))) {
        throw fail(`must be null or a list of ${ROUTES.join(", ")}`);
      }
    } else if (name === "rate_limit") {
      const off = value === null || value === false;
      const ok =
        off ||
        (typeof value === "object" &&
          Number.isInteger(value.requests) &&
          value.requests > 0 &&
          typeof value.window_s === "number" &&
          value.window_s > 0);
      if (!ok) throw fail("must be null/false or {requests: int > 0, window_s: number > 0}");
    } else if (name === "deny_after") {
      if (value !== null && (!Number.isInteger(value) || value < 0)) {
        throw fail("must be null or a non-negative integer");
      }
    } else if (name === "key_write_rate") {
      if (typeof value !== "boolean") throw fail("must be true or false");
    }
    out[name] = name === "rate_limit" && value === false ? null : value;
  }
  return out;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function newStats() {
  return {
    requests: 0,
    by_route: {},
    by_status: {},
    faults: {
      rate429: 0,
      rate5xx: 0,
      delay: 0,
      drop: 0,
      partial: 0,
      partial_pairs: 0,
      rate_limited: 0,
      key_write_limited: 0,
      denied: 0,
    },
    writes: 0,
    pairs_written: 0,
    deletes: 0,
    pairs_deleted: 0,
  };
}

const state = {
  defaults: null, // BUILTIN_DEFAULTS overlaid with CF_API_DEFAULTS, fixed on first request
  config: null,
  rng: null,
  stats: newStats(),
  window: null, // {start: ms, count}
  allowed: 0, // requests let through while deny_after is set (since the knobs were set)
  keyWrites: new Map(), // "<ns>\u0000<key>" -> ms of the last write
};

function init(env) {
  if (state.defaults) return;
  let defaults = { ...BUILTIN_DEFAULTS };
  if (env.CF_API_DEFAULTS) {
    defaults = buildConfig(JSON.parse(env.CF_API_DEFAULTS), defaults);
  }
  state.defaults = defaults;
  resetState();
}

function resetState() {
  state.config = { ...state.defaults };
  state.rng = mulberry32(state.config.seed);
  state.stats = newStats();
  state.window = null;
  state.allowed = 0;
  state.keyWrites.clear();
}

const bump = (obj, name, by = 1) => {
  obj[name] = (obj[name] ?? 0) + by;
};

// --------------------------------------------------------------------------------------------
// Responses.

const JSON_HEADERS = { "content-type": "application/json" };

function envelope(result, extra = {}, status = 200, headers = {}) {
  const body = { success: true, errors: [], messages: [], result, ...extra };
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

function errorResponse(err) {
  const body = {
    success: false,
    errors: [{ code: err.code, message: err.message, ...(err.chain ? { error_chain: err.chain } : {}) }],
    messages: [],
    result: null,
  };
  return new Response(JSON.stringify(body), {
    status: err.status,
    headers: { ...JSON_HEADERS, ...err.headers },
  });
}

/** A response whose connection closes after the headers: clients see a transport error. */
function droppedResponse() {
  const { readable, writable } = new FixedLengthStream(64);
  writable.getWriter().abort(new Error("edgeshelf fault injection: connection dropped")).catch(() => {});
  return new Response(readable, { status: 200, headers: JSON_HEADERS });
}

function injected5xx(status) {
  if (status === 502) {
    // What a broken edge hop looks like: HTML, not the JSON envelope.
    return new Response("<html><body><h1>502 Bad Gateway</h1></body></html>", {
      status,
      headers: { "content-type": "text/html" },
    });
  }
  const err =
    status === 503
      ? new ApiError(503, CODE.unavailable, "service temporarily unavailable")
      : new ApiError(status, CODE.internal, "internal server error");
  return errorResponse(err);
}

// --------------------------------------------------------------------------------------------
// Bytes, keys and options.

const encoder = new TextEncoder();
const byteLength = (s) => encoder.encode(s).byteLength;

function validateKey(key) {
  if (typeof key !== "string") throw badRequest(CODE.invalidKey, "Key names must be strings");
  if (key === "") throw badRequest(CODE.invalidKey, "Key names must not be empty");
  if (key === "." || key === "..") {
    throw badRequest(CODE.invalidKey, `Illegal key name "${key}". Please use a different name.`);
  }
  const n = byteLength(key);
  if (n > LIMITS.keyBytes) {
    throw new ApiError(
      414,
      CODE.keyTooLong,
      `UTF-8 encoded length of ${n} exceeds key length limit of ${LIMITS.keyBytes}.`,
    );
  }
}

function decodeKey(raw) {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(CODE.invalidKey, "Could not URL-decode key name");
  }
}

const present = (v) => v !== undefined && v !== null && v !== "";

/** expiration_ttl wins over expiration, as in the real API. Returns binding put options. */
function expiryOptions(rawExpiration, rawTtl, nowS) {
  if (present(rawTtl)) {
    const ttl = Number(rawTtl);
    if (!Number.isFinite(ttl) || ttl <= 0) {
      throw badRequest(
        CODE.invalidExpiration,
        `Invalid expiration_ttl of ${rawTtl}. Please specify integer greater than 0.`,
      );
    }
    if (ttl < LIMITS.minTtl) {
      throw badRequest(
        CODE.invalidExpiration,
        `Invalid expiration_ttl of ${rawTtl}. Expiration TTL must be at least ${LIMITS.minTtl}.`,
      );
    }
    return { expirationTtl: Math.floor(ttl) };
  }
  if (present(rawExpiration)) {
    const exp = Number(rawExpiration);
    if (!Number.isFinite(exp) || exp <= nowS) {
      throw badRequest(
        CODE.invalidExpiration,
        `Invalid expiration of ${rawExpiration}. Please specify integer greater than the current number of seconds since the UNIX epoch.`,
      );
    }
    if (exp < nowS + LIMITS.minTtl) {
      throw badRequest(
        CODE.invalidExpiration,
        `Invalid expiration of ${rawExpiration}. Expiration times must be at least ${LIMITS.minTtl} seconds in the future.`,
      );
    }
    return { expiration: Math.floor(exp) };
  }
  return {};
}

function checkMetadata(metadata) {
  const n = byteLength(JSON.stringify(metadata));
  if (n > LIMITS.metadataBytes) {
    throw new ApiError(
      413,
      CODE.metadataTooLarge,
      `Metadata length of ${n} exceeds limit of ${LIMITS.metadataBytes}.`,
    );
  }
}

function parseMetadataText(text) {
  let metadata;
  try {
    metadata = JSON.parse(text);
  } catch {
    throw badRequest(CODE.invalidMetadata, "metadata must be valid JSON");
  }
  checkMetadata(metadata);
  return metadata;
}

const valueTooLarge = (n) =>
  new ApiError(413, CODE.valueTooLarge, `Value length of ${n} exceeds limit of ${LIMITS.valueBytes}.`);

function checkValueSize(n) {
  if (n > LIMITS.valueBytes) throw valueTooLarge(n);
}

/** Read a request body of at most `max` bytes; a larger one is drained, then refused. */
async function readBody(request, max, tooLarge) {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    // Keep draining past the limit so the client, still sending, can read our 413.
    if (total <= max) chunks.push(value);
  }
  if (total > max) throw tooLarge(total);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

async function readJson(request, max, tooLarge) {
  const bytes = await readBody(request, max, tooLarge);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw badRequest(CODE.invalidBody, "Could not parse request body as JSON");
  }
}

function indexOfBytes(hay, needle, from) {
  const first = needle[0];
  for (let i = hay.indexOf(first, from); i !== -1 && i <= hay.length - needle.length; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** Parse multipart/form-data into {name: Uint8Array}, keeping binary parts byte-exact. */
function parseMultipart(bytes, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!m) throw badRequest(CODE.invalidBody, "multipart body without a boundary");
  const delim = encoder.encode(`--${m[1] ?? m[2].trim()}`);
  const crlfDelim = encoder.encode(`\r\n--${m[1] ?? m[2].trim()}`);
  const headerEnd = encoder.encode("\r\n\r\n");
  const parts = {};
  let at = indexOfBytes(bytes, delim, 0);
  if (at === -1) throw badRequest(CODE.invalidBody, "multipart body has no parts");
  at += delim.length;
  for (;;) {
    if (bytes[at] === 0x2d && bytes[at + 1] === 0x2d) break; // closing "--"
    if (bytes[at] === 0x0d && bytes[at + 1] === 0x0a) at += 2;
    const hEnd = indexOfBytes(bytes, headerEnd, at);
    if (hEnd === -1) throw badRequest(CODE.invalidBody, "malformed multipart part headers");
    const headers = new TextDecoder().decode(bytes.subarray(at, hEnd));
    const start = hEnd + headerEnd.length;
    const end = indexOfBytes(bytes, crlfDelim, start);
    if (end === -1) throw badRequest(CODE.invalidBody, "unterminated multipart part");
    const name = /content-disposition:[^\r\n]*?\bname="([^"]*)"/i.exec(headers)?.[1];
    if (name !== undefined) parts[name] = bytes.subarray(start, end);
    at = end + crlfDelim.length;
    if (at >= bytes.length) throw badRequest(CODE.invalidBody, "unterminated multipart body");
  }
  return parts;
}

function decodeBase64(text, key) {
  const clean = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) {
    throw badRequest(CODE.invalidBody, `Value for key '${key}' is not valid base64`);
  }
  let binary;
  try {
    binary = atob(clean);
  } catch {
    throw badRequest(CODE.invalidBody, `Value for key '${key}' is not valid base64`);
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

async function pool(items, size, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, items.length) }, worker));
}

/** Expiration and metadata of one key, from a one-item list (get() does not expose expiry). */
async function listEntry(kv, key) {
  const res = await kv.list({ prefix: key, limit: 1 });
  const first = res.keys[0];
  return first && first.name === key ? first : null;
}

// --------------------------------------------------------------------------------------------
// Rate limits.

function checkTokenWindow(now) {
  const rl = state.config.rate_limit;
  if (!rl) return;
  const windowMs = rl.window_s * 1000;
  if (!state.window || now - state.window.start >= windowMs) state.window = { start: now, count: 0 };
  if (state.window.count >= rl.requests) {
    state.stats.faults.rate_limited++;
    const retry = Math.max(1, Math.ceil((state.window.start + windowMs - now) / 1000));
    throw new ApiError(429, CODE.rateLimited, RATE_LIMIT_MESSAGE, { "retry-after": String(retry) });
  }
  state.window.count++;
}

function rateHeaders(now) {
  const rl = state.config.rate_limit;
  if (!rl || !state.window) return {};
  const reset = Math.max(0, Math.ceil((state.window.start + rl.window_s * 1000 - now) / 1000));
  return {
    ratelimit: `"default";r=${Math.max(0, rl.requests - state.window.count)};t=${reset}`,
    "ratelimit-policy": `"default";q=${rl.requests};w=${rl.window_s}`,
  };
}

/** Keys of `keys` written less than the per-key interval ago (none when the limit is off). */
function keyWriteLimited(nsId, keys, now) {
  const limited = new Set();
  if (!state.config.key_write_rate) return limited;
  const interval = state.config.key_write_interval_ms;
  for (const key of keys) {
    const last = state.keyWrites.get(`${nsId}\u0000${key}`);
    if (last !== undefined && now - last < interval) limited.add(key);
  }
  return limited;
}

function recordKeyWrite(nsId, key, now) {
  if (state.keyWrites.size > 200_000) {
    const horizon = now - state.config.key_write_interval_ms;
    for (const [k, t] of state.keyWrites) if (t < horizon) state.keyWrites.delete(k);
  }
  state.keyWrites.set(`${nsId}\u0000${key}`, now);
}

// --------------------------------------------------------------------------------------------
// KV handlers. `ns` is {id, binding, kv}.

async function getValue(ns, key) {
  validateKey(key);
  const { value } = await ns.kv.getWithMetadata(key, { type: "arrayBuffer" });
  if (value === null) throw new ApiError(404, CODE.keyNotFound, "get: 'key not found'");
  const headers = { "content-type": "application/octet-stream" };
  const entry = await listEntry(ns.kv, key);
  if (entry?.expiration !== undefined) headers.expiration = String(entry.expiration);
  return new Response(value, { status: 200, headers });
}

async function putValue(ns, key, request, url, now) {
  validateKey(key);
  const opts = expiryOptions(
    url.searchParams.get("expiration"),
    url.searchParams.get("expiration_ttl"),
    Math.floor(now / 1000),
  );
  const contentType = request.headers.get("content-type") ?? "";
  let value;
  if (/^multipart\/form-data/i.test(contentType)) {
    const body = await readBody(request, LIMITS.valueBytes + LIMITS.multipartOverhead, valueTooLarge);
    const parts = parseMultipart(body, contentType);
    if (!parts.value) throw badRequest(CODE.invalidBody, "multipart body has no 'value' part");
    value = parts.value;
    checkValueSize(value.byteLength);
    if (parts.metadata) opts.metadata = parseMetadataText(new TextDecoder().decode(parts.metadata));
  } else {
    value = await readBody(request, LIMITS.valueBytes, valueTooLarge);
  }
  if (keyWriteLimited(ns.id, [key], now).size) {
    state.stats.faults.key_write_limited++;
    throw new ApiError(
      429,
      CODE.keyWriteRate,
      "put: too many writes to the same key (at most one per second)",
      { "retry-after": "1" },
    );
  }
  await ns.kv.put(key, value, opts);
  recordKeyWrite(ns.id, key, now);
  state.stats.writes++;
  state.stats.pairs_written++;
  return envelope({});
}

async function deleteValue(ns, key) {
  validateKey(key);
  await ns.kv.delete(key);
  state.stats.deletes++;
  state.stats.pairs_deleted++;
  return envelope({});
}

async function getMetadata(ns, key) {
  validateKey(key);
  const entry = await listEntry(ns.kv, key);
  if (!entry) throw new ApiError(404, CODE.keyNotFound, "get: 'key not found'");
  return envelope(entry.metadata ?? null);
}

async function listKeys(ns, url) {
  const rawLimit = url.searchParams.get("limit");
  let limit = LIMITS.listMax;
  if (rawLimit !== null) {
    limit = Number(rawLimit);
    if (!Number.isInteger(limit) || limit < LIMITS.listMin || limit > LIMITS.listMax) {
      throw badRequest(
        CODE.invalidLimit,
        `Invalid key_count_limit of ${rawLimit}. Please specify an integer between ${LIMITS.listMin} and ${LIMITS.listMax}.`,
      );
    }
  }
  const prefix = url.searchParams.get("prefix") ?? undefined;
  if (prefix !== undefined && byteLength(prefix) > LIMITS.keyBytes) {
    throw new ApiError(
      414,
      CODE.keyTooLong,
      `UTF-8 encoded length of ${byteLength(prefix)} exceeds key length limit of ${LIMITS.keyBytes}.`,
    );
  }
  const cursor = url.searchParams.get("cursor") || undefined;
  let res;
  try {
    res = await ns.kv.list({ prefix, limit, cursor });
  } catch (err) {
    if (cursor !== undefined) throw badRequest(CODE.invalidCursor, "Invalid cursor");
    throw err;
  }
  const result = res.keys.map((k) => ({
    name: k.name,
    ...(k.expiration !== undefined ? { expiration: k.expiration } : {}),
    ...(k.metadata !== undefined ? { metadata: k.metadata } : {}),
  }));
  const next = res.list_complete ? "" : res.cursor ?? "";
  return envelope(result, { result_info: { count: result.length, cursor: next } });
}

function bulkTooLarge(n) {
  return new ApiError(413, CODE.bulkTooLarge, `Request body of ${n} bytes exceeds the limit of ${LIMITS.bulkBytes} bytes.`);
}

function checkPairCount(items, what) {
  if (!Array.isArray(items)) throw badRequest(CODE.invalidBody, `${what} body must be a JSON array`);
  if (items.length > LIMITS.bulkPairs) {
    throw new ApiError(
      413,
      CODE.bulkTooLarge,
      `${what} of ${items.length} keys exceeds the limit of ${LIMITS.bulkPairs} keys per request.`,
    );
  }
}

async function bulkPut(ns, request, now, partialSeed) {
  const items = await readJson(request, LIMITS.bulkBytes, bulkTooLarge);
  checkPairCount(items, "Bulk write");
  const nowS = Math.floor(now / 1000);
  const pairs = items.map((item, i) => {
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw badRequest(CODE.invalidBody, `Bulk write item ${i} must be an object`);
    }
    validateKey(item.key);
    if (typeof item.value !== "string") {
      throw badRequest(CODE.invalidBody, `Value for key '${item.key}' must be a string`);
    }
    if (item.base64 !== undefined && typeof item.base64 !== "boolean") {
      throw badRequest(CODE.invalidBody, `base64 for key '${item.key}' must be a boolean`);
    }
    const value = item.base64 ? decodeBase64(item.value, item.key) : item.value;
    checkValueSize(item.base64 ? value.byteLength : byteLength(value));
    const opts = expiryOptions(item.expiration, item.expiration_ttl, nowS);
    if (item.metadata !== undefined && item.metadata !== null) {
      checkMetadata(item.metadata);
      opts.metadata = item.metadata;
    }
    return { key: item.key, value, opts };
  });

  const failed = new Set(keyWriteLimited(ns.id, pairs.map((p) => p.key), now));
  if (failed.size) state.stats.faults.key_write_limited += failed.size;
  if (pairs.length && partialSeed) {
    // A partial failure: a share of the pairs is not applied, and reported for a retry.
    const rng = mulberry32(partialSeed);
    const share = state.config.partial_share;
    const before = failed.size;
    for (const p of pairs) if (rng() < share) failed.add(p.key);
    if (failed.size === before) failed.add(pairs[Math.floor(rng() * pairs.length)].key);
    state.stats.faults.partial++;
    state.stats.faults.partial_pairs += failed.size - before;
  }
  let ok = 0;
  await pool(pairs, WRITE_CONCURRENCY, async (p) => {
    if (failed.has(p.key)) return;
    try {
      await ns.kv.put(p.key, p.value, p.opts);
      recordKeyWrite(ns.id, p.key, now);
      ok++;
    } catch (err) {
      console.log(`cf-api bulk write of one pair failed: ${err?.message ?? err}`);
      failed.add(p.key);
    }
  });
  if (ok) {
    state.stats.writes++;
    state.stats.pairs_written += ok;
  }
  return envelope({ successful_key_count: ok, unsuccessful_keys: [...failed] });
}

async function bulkDelete(ns, request) {
  const keys = await readJson(request, LIMITS.bulkBytes, bulkTooLarge);
  checkPairCount(keys, "Bulk delete");
  keys.forEach(validateKey);
  let ok = 0;
  const failed = [];
  await pool(keys, WRITE_CONCURRENCY, async (key) => {
    try {
      await ns.kv.delete(key);
      ok++;
    } catch (err) {
      console.log(`cf-api bulk delete of one key failed: ${err?.message ?? err}`);
      failed.push(key);
    }
  });
  if (ok) {
    state.stats.deletes++;
    state.stats.pairs_deleted += ok;
  }
  return envelope({ successful_key_count: ok, unsuccessful_keys: failed });
}

async function bulkGet(ns, request) {
  const body = await readJson(request, LIMITS.bulkBytes, bulkTooLarge);
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest(CODE.invalidBody, "Bulk get body must be a JSON object with a keys array");
  }
  const { keys } = body;
  const type = body.type ?? "text";
  const withMetadata = body.withMetadata ?? body.with_metadata ?? false;
  if (!Array.isArray(keys)) throw badRequest(CODE.invalidBody, "keys must be an array of strings");
  if (keys.length > LIMITS.bulkGetKeys) {
    throw badRequest(CODE.invalidBody, `You can request a maximum of ${LIMITS.bulkGetKeys} keys`);
  }
  if (keys.length < 1) throw badRequest(CODE.invalidBody, "You must request a minimum of 1 key");
  if (type !== "text" && type !== "json") {
    throw badRequest(CODE.invalidBody, `${JSON.stringify(type)} is not a valid type. Use "json" or "text"`);
  }
  if (typeof withMetadata !== "boolean") throw badRequest(CODE.invalidBody, "withMetadata must be a boolean");
  keys.forEach(validateKey);
  const values = {};
  const decoder = new TextDecoder("utf-8", { fatal: true });
  await pool(keys, WRITE_CONCURRENCY, async (key) => {
    const { value: raw, metadata } = await ns.kv.getWithMetadata(key, { type: "arrayBuffer" });
    if (raw === null) {
      values[key] = null;
      return;
    }
    let value;
    try {
      value = decoder.decode(raw);
    } catch {
      throw badRequest(CODE.notText, `Value of key '${key}' is not text; bulk get reads text-based values only`);
    }
    if (type === "json") {
      try {
        value = JSON.parse(value);
      } catch {
        throw badRequest(CODE.notText, `Value of key '${key}' is not valid JSON`);
      }
    }
    if (!withMetadata) {
      values[key] = value;
      return;
    }
    const entry = await listEntry(ns.kv, key);
    values[key] = {
      value,
      metadata: metadata ?? null,
      ...(entry?.expiration !== undefined ? { expiration: entry.expiration } : {}),
    };
  });
  // Answer in the order the keys were asked for.
  return envelope({ values: Object.fromEntries(keys.map((k) => [k, values[k]])) });
}

// --------------------------------------------------------------------------------------------
// Routing.

function namespaces(env) {
  const map = JSON.parse(env.CF_NAMESPACES ?? "{}");
  return Object.entries(map).map(([id, binding]) => ({ id, binding, kv: env[binding] }));
}

/** Page-numbered like the real list; the SDK pages until it gets an empty page. */
function listNamespaces(env, url) {
  const intParam = (name, dflt, max) => {
    const raw = url.searchParams.get(name);
    if (raw === null) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw badRequest(CODE.invalidLimit, `${name} must be an integer between 1 and ${max}`);
    }
    return n;
  };
  const page = intParam("page", 1, 1_000_000);
  const perPage = intParam("per_page", 20, 1000);
  const all = namespaces(env)
    .map(namespaceJson)
    .sort((a, b) => (a.title < b.title ? -1 : a.title > b.title ? 1 : 0));
  const result = all.slice((page - 1) * perPage, page * perPage);
  return envelope(result, {
    result_info: {
      page,
      per_page: perPage,
      count: result.length,
      total_count: all.length,
      total_pages: Math.max(1, Math.ceil(all.length / perPage)),
    },
  });
}

function namespaceJson(ns) {
  return { id: ns.id, title: ns.binding, supports_url_encoding: true };
}

/** Map a path under /client/v4 to {route, account, nsId, key} or null. */
function matchRoute(method, path) {
  const m = /^\/client\/v4\/accounts\/([^/]+)\/storage\/kv\/namespaces(?:\/([^/]+)(\/.*)?)?\/?$/.exec(path);
  if (!m) return null;
  const [, account, nsId, rest] = m;
  const r = (route, allowed, key) => ({ route, allowed, account, nsId, key });
  if (!nsId) return r("namespaces_list", ["GET"]);
  if (!rest || rest === "/") return r("namespace_get", ["GET"]);
  const valueMatch = /^\/(values|metadata)\/(.*)$/s.exec(rest);
  if (valueMatch) {
    const [, kind, rawKey] = valueMatch;
    if (kind === "metadata") return r("metadata_get", ["GET"], rawKey);
    const route = { GET: "values_get", PUT: "values_put", DELETE: "values_delete" }[method];
    return r(route ?? "values_get", ["GET", "PUT", "DELETE"], rawKey);
  }
  if (rest === "/keys") return r("keys_list", ["GET"]);
  if (rest === "/bulk") {
    // DELETE /bulk is the older spelling of POST /bulk/delete.
    return r(method === "DELETE" ? "bulk_delete" : "bulk_put", ["PUT", "DELETE"]);
  }
  if (rest === "/bulk/delete") return r("bulk_delete", ["POST"]);
  if (rest === "/bulk/get") return r("bulk_get", ["POST"]);
  return null;
}

function faultRate(knob, route) {
  const { routes } = state.config;
  if (routes && !routes.includes(route)) return 0;
  return state.config[knob];
}

function constantTimeEqual(a, b) {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Throws unless the request carries `Authorization: Bearer <CF_API_TOKEN>`. */
function authenticate(request, env) {
  const header = request.headers.get("authorization");
  if (header === null) {
    throw new ApiError(401, CODE.unauthenticated, "Unable to authenticate request");
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) {
    const err = new ApiError(400, CODE.invalidHeaders, "Invalid request headers");
    err.chain = [{ code: 6111, message: "Invalid format for Authorization header" }];
    throw err;
  }
  if (!constantTimeEqual(m[1], String(env.CF_API_TOKEN ?? ""))) {
    throw new ApiError(403, CODE.authentication, "Authentication error");
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** deny_after: the token "revoked" mid-run; every request past the first N answers 403. */
function denyAfter(route, note) {
  const limit = state.config.deny_after;
  const { routes } = state.config;
  if (limit === null || (routes && !routes.includes(route))) return;
  if (state.allowed < limit) {
    state.allowed++;
    return;
  }
  state.stats.faults.denied++;
  note.faults.push("403");
  throw new ApiError(403, CODE.authentication, "Authentication error");
}

async function handleApi(request, env, url, now, note) {
  const method = request.method.toUpperCase();
  const match = matchRoute(method, url.pathname);
  const route = match?.route ?? "unknown";
  note.route = route;
  state.stats.requests++;
  bump(state.stats.by_route, route);
  authenticate(request, env);
  if (!match) throw new ApiError(404, CODE.noRoute, "No route for that URI");
  if (!match.allowed.includes(method)) {
    throw new ApiError(405, CODE.methodNotAllowed, `Method ${method} not allowed for this endpoint`);
  }
  denyAfter(route, note);
  checkTokenWindow(now);
  note.rateHeaders = rateHeaders(now);
  if (match.account !== env.CF_ACCOUNT_ID) {
    throw new ApiError(403, CODE.authentication, "Authentication error");
  }

  // Faults. Five draws per request whatever is switched on, so a seed replays the same faults
  // for the same sequence of requests.
  const [dDelay, d429, d5xx, dDrop, dPartial] = Array.from({ length: 5 }, state.rng);
  note.partialSeed = dPartial < faultRate("partial_rate", route) ? Math.floor(dPartial * 2 ** 32) + 1 : 0;
  if (dDelay < faultRate("delay_rate", route) && state.config.delay_ms > 0) {
    state.stats.faults.delay++;
    note.faults.push("delay");
    await sleep(state.config.delay_ms);
  }
  if (d429 < faultRate("rate429", route)) {
    state.stats.faults.rate429++;
    note.faults.push("429");
    throw new ApiError(429, CODE.rateLimited, RATE_LIMIT_MESSAGE, {
      "retry-after": String(state.config.retry_after),
    });
  }
  if (d5xx < faultRate("rate5xx", route)) {
    state.stats.faults.rate5xx++;
    const statuses = state.config.status5xx;
    const status = statuses[Math.floor((d5xx / state.config.rate5xx) * statuses.length) % statuses.length];
    note.faults.push(String(status));
    return injected5xx(status);
  }
  let dropAfter = false;
  if (dDrop < faultRate("drop_rate", route)) {
    state.stats.faults.drop++;
    const phase = state.config.drop_phase;
    dropAfter = phase === "after" || (phase === "random" && (dDrop / state.config.drop_rate) < 0.5);
    note.faults.push(dropAfter ? "drop-after" : "drop-before");
    note.dropped = true;
    if (!dropAfter) return droppedResponse();
  }

  let response;
  if (route === "namespaces_list") {
    response = listNamespaces(env, url);
  } else {
    const ns = namespaces(env).find((n) => n.id === match.nsId);
    if (!ns || !ns.kv) {
      throw new ApiError(404, CODE.namespaceNotFound, "get namespace: 'namespace not found'");
    }
    const key = match.key === undefined ? undefined : decodeKey(match.key);
    switch (route) {
      case "namespace_get":
        response = envelope(namespaceJson(ns));
        break;
      case "values_get":
        response = await getValue(ns, key);
        break;
      case "values_put":
        response = await putValue(ns, key, request, url, now);
        break;
      case "values_delete":
        response = await deleteValue(ns, key);
        break;
      case "metadata_get":
        response = await getMetadata(ns, key);
        break;
      case "keys_list":
        response = await listKeys(ns, url);
        break;
      case "bulk_put":
        response = await bulkPut(ns, request, now, note.partialSeed);
        break;
      case "bulk_delete":
        response = await bulkDelete(ns, request);
        break;
      case "bulk_get":
        response = await bulkGet(ns, request);
        break;
    }
  }
  return dropAfter ? droppedResponse() : response;
}

async function handleControl(request, env, url) {
  const path = url.pathname;
  if (path === "/__edgeshelf/health") return Response.json({ ok: true });
  authenticate(request, env);
  const method = request.method.toUpperCase();
  if (path === "/__edgeshelf/stats" && method === "GET") {
    return Response.json({ ...state.stats, config: state.config });
  }
  if (path === "/__edgeshelf/reset" && method === "POST") {
    resetState();
    return Response.json({ ok: true, config: state.config });
  }
  if (path === "/__edgeshelf/faults" && method === "POST") {
    let body;
    try {
      body = await request.json();
    } catch {
      throw badRequest(CODE.invalidBody, "Could not parse request body as JSON");
    }
    // Knobs not given go back to their defaults, so a POST states the whole fault setting.
    state.config = buildConfig(body, state.defaults);
    state.rng = mulberry32(state.config.seed);
    state.window = null; // a new rate_limit setting starts a fresh window
    state.allowed = 0; // and deny_after counts from now
    return Response.json({ ok: true, config: state.config });
  }
  throw new ApiError(404, CODE.noRoute, "No route for that URI");
}

/** Binding errors ("KV PUT failed: 413 ...") become the API's 4xx, never a 500. */
function fromBindingError(err) {
  const m = /KV \w+ failed: (4\d\d) (.*)$/s.exec(err?.message ?? "");
  if (m) return new ApiError(Number(m[1]), CODE.invalidBody, m[2]);
  return null;
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    const url = new URL(request.url);
    const note = { route: "-", faults: [], rateHeaders: {} };
    let response;
    try {
      init(env);
      if (url.pathname.startsWith("/__edgeshelf/")) {
        response = await handleControl(request, env, url);
      } else {
        response = await handleApi(request, env, url, started, note);
      }
    } catch (err) {
      let apiErr = err instanceof ApiError ? err : fromBindingError(err);
      if (!apiErr) {
        console.log(`cf-api internal error: ${err?.stack ?? err}`);
        apiErr = new ApiError(500, CODE.internal, "internal server error");
      }
      response = errorResponse(apiErr);
    }
    if (!url.pathname.startsWith("/__edgeshelf/")) {
      bump(state.stats.by_status, note.dropped ? "dropped" : String(response.status));
      for (const [k, v] of Object.entries(note.rateHeaders)) response.headers.set(k, v);
    }
    const faults = note.faults.length ? ` fault=${note.faults.join(",")}` : "";
    const shownPath = url.pathname.length > 160 ? `${url.pathname.slice(0, 160)}...` : url.pathname;
    const shownStatus = note.dropped ? "dropped" : response.status;
    console.log(`cf-api ${request.method} ${shownPath} ${shownStatus} ${Date.now() - started}ms${faults}`);
    return response;
  },
};
