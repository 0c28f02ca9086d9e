// Drives Debian's Chromium with playwright-core for the Python browser tests, one JSON command
// per stdin line and one JSON reply per stdout line (logs go to stderr):
//
//   {"id": 1, "op": "newContext"}                       -> {"id": 1, "ok": true, "result": "c1"}
//   {"id": 2, "op": "goto", "page": "p1", "url": "..."} -> {"id": 2, "ok": true, "result": {...}}
//
// Ops: newContext {locale} -> context id; newPage {context} -> page id; goto {page, url} and
// reload {page} -> {status, url, headers, requestHeaders}; evaluate {page, expression};
// cookies {context, url}; addCookies {context, cookies}; screenshot {page, path};
// closeContext {context}; close {}.
//
//   node tests/browser/driver.mjs [--chromium /usr/bin/chromium]
import readline from "node:readline";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values } = parseArgs({
  options: { chromium: { type: "string", default: "/usr/bin/chromium" } },
});

// Flags for a root, headless, offline CI machine. Playwright adds --headless and --no-sandbox
// itself (chromiumSandbox: false) and gives every launch a fresh --user-data-dir under TMPDIR.
const browser = await chromium.launch({
  executablePath: values.chromium,
  headless: true,
  chromiumSandbox: false,
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const contexts = new Map();
const pages = new Map();
let next = 0;

function get(map, id, what) {
  const value = map.get(id);
  if (!value) throw new Error(`unknown ${what} ${id}`);
  return value;
}

async function navigation(response) {
  if (!response) return null;
  return {
    status: response.status(),
    url: response.url(),
    headers: await response.allHeaders(),
    // The headers Chromium actually sent, cookies included (from the network stack).
    requestHeaders: await response.request().allHeaders(),
  };
}

const ops = {
  async newContext({ locale = "en-US" }) {
    const id = `c${++next}`;
    contexts.set(id, await browser.newContext({ locale, viewport: { width: 1280, height: 800 } }));
    return id;
  },
  async newPage({ context }) {
    const id = `p${++next}`;
    pages.set(id, await get(contexts, context, "context").newPage());
    return id;
  },
  async goto({ page, url }) {
    return navigation(await get(pages, page, "page").goto(url, { waitUntil: "load" }));
  },
  async reload({ page }) {
    return navigation(await get(pages, page, "page").reload({ waitUntil: "load" }));
  },
  async evaluate({ page, expression }) {
    return get(pages, page, "page").evaluate(expression);
  },
  async cookies({ context, url }) {
    return get(contexts, context, "context").cookies(url);
  },
  async addCookies({ context, cookies }) {
    await get(contexts, context, "context").addCookies(cookies);
    return null;
  },
  async screenshot({ page, path }) {
    await get(pages, page, "page").screenshot({ path, fullPage: true });
    return path;
  },
  async closeContext({ context }) {
    await get(contexts, context, "context").close();
    contexts.delete(context);
    return null;
  },
  async version() {
    return browser.version();
  },
};

function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, op, ...args } = JSON.parse(line);
  if (op === "close") {
    await browser.close();
    reply({ id, ok: true, result: null });
    break;
  }
  try {
    const handler = ops[op];
    if (!handler) throw new Error(`unknown op ${op}`);
    reply({ id, ok: true, result: (await handler(args)) ?? null });
  } catch (err) {
    reply({ id, ok: false, error: String(err?.stack ?? err) });
  }
}
await browser.close().catch(() => {});
process.exit(0);
