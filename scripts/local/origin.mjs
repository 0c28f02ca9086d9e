// Origin stand-in: serves page shells and plain pages, with switchable faults for tests.
//
//   GET  /              the home shell (shells/home.html), with the headers a real origin
//                       sends: its security policy and links (SITE_HEADERS, which the Worker
//                       must keep) and Set-Cookie, ETag, Last-Modified (which it must strip)
//   GET  /<other>       a small plain page naming the method and path (passthrough routes)
//   POST /__origin/config {mode, delay_ms, pad_bytes, chunked}   mode: ok | down | slow |
//                       error | nohtml | noslot | endless (a chunked page that never ends, sent
//                       as fast as it is read); pad_bytes grows the shell to about that size;
//                       chunked: true sends the shell without Content-Length (chunked)
//   GET  /__origin/stats  {requests, shell_requests, aborted}: aborted counts shell answers
//                       the client hung up on before their end
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODES = new Set(["ok", "down", "slow", "error", "nohtml", "noslot", "endless"]);
// A site's own headers on its homepage: what must survive edgeshelf in front of it.
export const SITE_HEADERS = {
  // The demo shell runs its own inline script and styles, so its policy allows them, as a
  // real site with inline code would; edgeshelf's shelf is a JSON data block CSP never runs.
  "content-security-policy":
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' https://i.ytimg.com",
  "strict-transport-security": "max-age=63072000; includeSubDomains; preload",
  "x-frame-options": "DENY",
  "referrer-policy": "strict-origin-when-cross-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=()",
  link: "</static/app.css>; rel=preload; as=style",
};

function padded(html, padBytes) {
  if (!padBytes || html.length >= padBytes) return html;
  // Realistic filler: repeated cards below the fold, so HTMLRewriter parses real markup.
  const card = '<li class="card"><a href="/watch/filler"><img alt="" src="/t.jpg"><span>More to watch</span></a></li>\n';
  const need = Math.ceil((padBytes - html.length) / card.length);
  return html.replace("</main>", `<ul class="filler">\n${card.repeat(need)}</ul>\n</main>`);
}

// An HTML page that never ends: filler cards while the client reads, until it hangs up.
function sendEndless(req, res, state) {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "x-origin": "stand-in" });
  const chunk = Buffer.from(
    '<li class="card"><a href="/watch/filler"><span>More to watch</span></a></li>\n'.repeat(800),
  );
  let open = true;
  res.on("close", () => {
    open = false;
    if (!res.writableFinished) state.aborted += 1;
  });
  res.write("<!doctype html><html><body><main><div data-edgeshelf-slot></div><ul>\n");
  const pump = () => {
    while (open && res.write(chunk));
    if (open) res.once("drain", pump);
  };
  pump();
}

export async function startOrigin({ host = "127.0.0.1", port = 8789 } = {}) {
  const shellFile = path.join(HERE, "shells", "home.html");
  const state = {
    mode: "ok", delay_ms: 0, pad_bytes: 0, chunked: false, requests: 0, shell_requests: 0,
    aborted: 0,
  };

  const server = http.createServer((req, res) => {
    // Prefixing (rather than resolving against a base) keeps odd targets like "//" a path.
    let url;
    try {
      url = new URL(`http://origin.invalid${req.url.startsWith("/") ? "" : "/"}${req.url}`);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad request target\n");
      return;
    }
    if (url.pathname === "/__origin/config" && req.method === "POST") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        try {
          const cfg = JSON.parse(body || "{}");
          if (cfg.mode !== undefined && !MODES.has(cfg.mode)) throw new Error(`unknown mode ${cfg.mode}`);
          for (const k of ["mode", "delay_ms", "pad_bytes", "chunked"]) {
            if (cfg[k] !== undefined) state[k] = cfg[k];
          }
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify(state));
        } catch (err) {
          res.writeHead(400, { "content-type": "text/plain" });
          res.end(String(err.message));
        }
      });
      return;
    }
    if (url.pathname === "/__origin/stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(state));
      return;
    }
    state.requests += 1;
    const isShell =
      (req.method === "GET" || req.method === "HEAD") &&
      (url.pathname === "/" || url.pathname.startsWith("/__shell/"));
    if (isShell) state.shell_requests += 1;
    if (state.mode === "down") {
      req.socket.destroy();
      return;
    }
    const respond = () => {
      if (state.mode === "error") {
        res.writeHead(503, { "content-type": "text/html" });
        res.end("<h1>origin maintenance</h1>");
        return;
      }
      if (!isShell) {
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "x-origin": "stand-in" });
        res.end(`origin page ${req.method} ${url.pathname}\n`);
        return;
      }
      if (state.mode === "nohtml") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"not":"html"}');
        return;
      }
      if (state.mode === "endless") {
        sendEndless(req, res, state);
        return;
      }
      let html = fs.readFileSync(shellFile, "utf8");
      if (state.mode === "noslot") html = html.replaceAll("data-edgeshelf-slot", "data-no-slot");
      html = padded(html, state.pad_bytes);
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        ...(state.chunked ? {} : { "content-length": Buffer.byteLength(html) }),
        "cache-control": "public, max-age=60",
        etag: '"shell-1"',
        "last-modified": "Mon, 23 Nov 2026 12:00:00 GMT",
        "set-cookie": "origin_session=do-not-cache; Path=/; HttpOnly",
        "x-origin": "stand-in",
        ...SITE_HEADERS,
      });
      res.on("close", () => {
        if (!res.writableFinished) state.aborted += 1;
      });
      res.end(req.method === "HEAD" ? undefined : html);
    };
    const delay = state.mode === "slow" ? Math.max(state.delay_ms, 5000) : state.delay_ms;
    if (delay > 0) setTimeout(respond, delay);
    else respond();
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return {
    port: server.address().port,
    state,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
