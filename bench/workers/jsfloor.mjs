// JavaScript passthrough floor: the cached shell straight from caches.default, nothing else.
// A miss (only while warming up) fills the cache from the origin, like the Python floor.
const PREFIX = "/__edgeshelf/shell/";
const VERSION = "/bench1";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const key = url.origin + PREFIX + url.pathname.slice(1) + VERSION;
    const cached = await caches.default.match(key);
    if (cached !== undefined) return cached;
    const origin = await fetch(env.ORIGIN_URL + "/");
    const fill = new Response(await origin.text(), {
      headers: {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "public, s-maxage=31536000, max-age=0",
      },
    });
    ctx.waitUntil(caches.default.put(key, fill.clone()));
    return fill;
  },
};
