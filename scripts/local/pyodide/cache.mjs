// The Workers Cache API for the Pyodide host, with the documented semantics
// (https://developers.cloudflare.com/workers/runtime-apis/cache/), in memory, per host process
// (a data center's cache is per location and not replicated either):
// - `match` answers `undefined` on a miss, for a non-GET request (unless `ignoreMethod`), and for
//   an entry past its freshness lifetime; it never goes to an origin.
// - `put` rejects with a TypeError for a non-GET request, a 206 response and `Vary: *`; it reads
//   the body whole and stores nothing for a response with `Set-Cookie`, or one that
//   `Cache-Control` keeps out of a shared cache (`no-store`, `private`, `no-cache`, no lifetime).
// - Lifetime: `s-maxage` wins over `max-age`, then `Expires`; with none of them, Cloudflare's
//   default edge TTL for the status (200/203/206/300/301/410: 120 min; 302/303: 20 min;
//   404: 3 min); other statuses are not stored.
// - `delete` answers whether an entry was removed.

const DEFAULT_TTL_S = new Map([
  [200, 7200], [203, 7200], [206, 7200], [300, 7200], [301, 7200], [410, 7200],
  [302, 1200], [303, 1200], [404, 180],
]);

function keyOf(request, RequestClass) {
  const req = typeof request === "string" || request instanceof URL
    ? new RequestClass(String(request))
    : request;
  const url = new URL(req.url);
  url.hash = "";
  return { method: req.method, url: url.href };
}

/** Seconds a response may be served from a shared cache, or 0 when it must not be stored. */
export function freshnessSeconds(headers, status, now = Date.now()) {
  const directives = new Map();
  for (const part of (headers.get("cache-control") ?? "").split(",")) {
    const [name, value] = part.trim().toLowerCase().split("=", 2);
    if (name) directives.set(name, value === undefined ? true : value.replace(/^"|"$/g, ""));
  }
  if (directives.has("no-store") || directives.has("no-cache")) return 0;
  if (directives.get("private") === true) return 0;
  for (const name of ["s-maxage", "max-age"]) {
    if (directives.has(name)) {
      const seconds = Number.parseInt(directives.get(name), 10);
      return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
    }
  }
  const expires = headers.get("expires");
  if (expires !== null) {
    const at = Date.parse(expires);
    return Number.isFinite(at) ? Math.max(0, Math.floor((at - now) / 1000)) : 0;
  }
  return DEFAULT_TTL_S.get(status) ?? 0;
}

export class Cache {
  #entries = new Map();
  #Request;
  #Response;

  constructor({ Request, Response }) {
    this.#Request = Request;
    this.#Response = Response;
  }

  async match(request, options = {}) {
    const { method, url } = keyOf(request, this.#Request);
    if (method !== "GET" && !options.ignoreMethod) return undefined;
    const entry = this.#entries.get(url);
    if (entry === undefined) return undefined;
    if (entry.expires <= Date.now()) {
      this.#entries.delete(url);
      return undefined;
    }
    return new this.#Response(entry.body.slice(), {
      status: entry.status,
      headers: [...entry.headers, ["cf-cache-status", "HIT"]],
    });
  }

  async put(request, response) {
    const { method, url } = keyOf(request, this.#Request);
    if (method !== "GET") throw new TypeError("Cannot cache response to non-GET request.");
    if (response.status === 206) {
      throw new TypeError("Cannot cache response to a range request (206 Partial Content).");
    }
    const vary = response.headers.get("vary") ?? "";
    if (vary.split(",").some((field) => field.trim() === "*")) {
      throw new TypeError("Cannot cache response with 'Vary: *' header.");
    }
    const body = new Uint8Array(await response.arrayBuffer());
    if (response.headers.has("set-cookie")) return undefined;
    const ttl = freshnessSeconds(response.headers, response.status);
    if (ttl <= 0) return undefined;
    this.#entries.set(url, {
      status: response.status,
      headers: [...response.headers].filter(([name]) => name !== "cf-cache-status"),
      body,
      expires: Date.now() + ttl * 1000,
    });
    return undefined;
  }

  async delete(request, options = {}) {
    const { method, url } = keyOf(request, this.#Request);
    if (method !== "GET" && !options.ignoreMethod) return false;
    return this.#entries.delete(url);
  }
}

/** `caches`: `default` and named caches, each its own store. */
export class CacheStorage {
  #named = new Map();
  #classes;

  constructor(classes) {
    this.#classes = classes;
    this.default = new Cache(classes);
  }

  async open(name) {
    if (!this.#named.has(name)) this.#named.set(name, new Cache(this.#classes));
    return this.#named.get(name);
  }
}
