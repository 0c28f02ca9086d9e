// The benchmark's scenario, shared by the edge benchmark (bench/edge.mjs) and the A/B tool
// (bench/ab.mjs): the data in KV, the visitors, the shells, filling every Worker's cache, the
// parity check between two Workers, and one measured wrk cell.
import os from "node:os";
import { cpuTicks, CLK_TCK, freePort, runWrk, workerdPids } from "./proc.mjs";
import { startStack, readWranglerConfig } from "../../scripts/local/stack.mjs";
import { peerRules, targetOptions } from "./targets.mjs";
import { KvMeter, wrapperWorker } from "./kvmodel.mjs";
import { audienceValue, keptHeaders, loadRules, uidTag } from "../workers/jscommon.mjs";

export const HOST = "127.0.0.1";
export const SIZES = { "10k": 10 * 1024, "100k": 100 * 1024, "1m": 1024 * 1024 };
const SHELL_VERSION = "bench1"; // the floors build their cache keys with the same version
export const UID = "0d7c3b2a-1111-4222-8333-444455556666"; // its profile is in KV
const UID_NO_PROFILE = "5b0e8f3c-2222-4333-8444-555566667777";
const OTHER_UID = "9f3a1c2e-3333-4444-9555-666677778888";
export const PROFILE = {
  affinity_bucket: "music", country: "us", fv: 1, lang: "en", last_seen: 1763900000,
  recent_categories: ["music", "gaming"],
};
// Parity only: profiles as another system might write them, read leniently
// (schema.read_profile): [uid, stored value, the shelf edgeshelf serves for it].
const ODD_PROFILES = {
  // No fv, parts to normalise: us-en-music.
  "profile-lenient": ["1c5e7a90-4444-4555-8666-777788889999",
    '{"country":" US ","lang":"en-GB","affinity_bucket":"Music!"}', "us-en-music"],
  // Only a bucket: country and language from the request (us, en): us-en-music.
  "profile-partial": ["2d6f8ba1-5555-4666-9777-88889999aaaa", '{"fv":1,"affinity_bucket":"music"}',
    "us-en-music"],
  // An explicit unknown country and language are kept, not replaced: xx-xx-music, then global.
  "profile-unknown": ["3e7a9cb2-6666-4777-a888-9999aaaabbbb",
    '{"fv":1,"country":"XX","lang":"xx","affinity_bucket":"music"}', "global"],
  // fv 1.0 is a float to Python's json, so not format 1: request signals (us-en-default).
  "profile-fv-float": ["4f8bad03-7777-4888-b999-aaaabbbbcccc",
    '{"fv":1.0,"country":"us","lang":"en","affinity_bucket":"music"}', "us-en-default"],
  // Another format version: request signals.
  "profile-fv2": ["5a9cbe14-8888-4999-8aaa-bbbbccccdddd",
    '{"fv":2,"country":"us","lang":"en","affinity_bucket":"music"}', "us-en-default"],
};
export const COMMON_HEADERS = {
  "accept-language": "en-US,en;q=0.9",
  // Sets request.cf on a direct socket, as the edge would (country only matters to cold visitors).
  "mf-cf-blob": JSON.stringify({ country: "US", colo: "LCL" }),
};
const MUSIC_AUD = audienceValue({ country: "us", lang: "en", bucket: "music", source: "kv" }, UID);
// Measured visitors. *known*: a returning visitor in the steady state, with its ID and a fresh
// audience cookie (a Worker without the audience cookie ignores it and reads the profile);
// *cold*: no cookie at all, so an ID is minted.
export const VISITORS = {
  known: { ...COMMON_HEADERS, cookie: `es_uid=${UID}; es_aud=${MUSIC_AUD}; theme=dark` },
  cold: { ...COMMON_HEADERS },
};
const GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const withCookie = (cookie, extra = {}) => ({ headers: { ...COMMON_HEADERS, ...extra, cookie } });
// Parity only: every branch of identity (crawlers, Sec-GPC), of the lenient profile read and of
// the audience cookie (issue 14), each to be answered alike by edgeshelf and the
// same-algorithm peer. `notNaive`: the naive peer, which has no audience cookie, answers it
// otherwise by design. `segment`: the shelf edgeshelf must serve, and `cookies`: the start of each
// Set-Cookie it must send, so a scenario cannot pass without testing what it names.
const MUSIC = "us-en-music";
const DEFAULT = "us-en-default";
const PARITY_VISITORS = {
  known: { segment: MUSIC, headers: VISITORS.known },
  cold: { segment: DEFAULT, headers: VISITORS.cold },
  // The first page view of a returning visitor: the profile is read and both cookies issued.
  returning: { segment: MUSIC, ...withCookie(`es_uid=${UID}`) },
  "no-profile": { segment: DEFAULT, ...withCookie(`es_uid=${UID_NO_PROFILE}`) },
  // A valid audience that differs from the stored profile: the shelf must be the cookie's.
  "aud-request": { notNaive: true, ...withCookie(`es_uid=${UID}; es_aud=${
    audienceValue({ country: "us", lang: "en", bucket: "default", source: "request" }, UID)}`) },
  "aud-other-id": { segment: MUSIC, ...withCookie(`es_uid=${UID}; es_aud=${
    audienceValue({ country: "us", lang: "en", bucket: "default", source: "kv" }, OTHER_UID)}`) },
  "aud-twice": { segment: MUSIC,
    ...withCookie(`es_aud=${MUSIC_AUD}; es_uid=${UID}; es_aud=${MUSIC_AUD}`) },
  "aud-malformed": { segment: MUSIC,
    ...withCookie(`es_uid=${UID}; es_aud=a1.us.en.music.k.${"z".repeat(8)}`) },
  // Sec-GPC: no ID; one the browser still sends is cleared.
  gpc: { segment: DEFAULT, cookies: ["es_uid=; Max-Age=0;"],
    ...withCookie(`es_uid=${UID}`, { "sec-gpc": "1" }) },
  "gpc-no-cookie": { segment: DEFAULT, cookies: [],
    headers: { ...COMMON_HEADERS, "sec-gpc": "1" } },
  // Crawlers (crawlers.CRAWLER_TOKENS, or Cloudflare's verifiedBot): the global shelf, no cookie,
  // not even GPC's clearing one.
  crawler: { segment: "global", cookies: [],
    headers: { ...COMMON_HEADERS, "user-agent": GOOGLEBOT } },
  "crawler-gpc": { segment: "global", cookies: [],
    ...withCookie(`es_uid=${UID}`, { "user-agent": GOOGLEBOT, "sec-gpc": "1" }) },
  "crawler-lower-case": { segment: "global", cookies: [], headers: { ...COMMON_HEADERS,
    "user-agent": "Mozilla/5.0 (Linux; Android 10) mobile safari discordbot/2.0" } },
  "not-a-crawler": { segment: MUSIC, ...withCookie(`es_uid=${UID}`, {
    "user-agent": "Mozilla/5.0 (Linux; Android 12; CUBOT P50) AppleWebKit/537.36 Chrome/120" }) },
  "verified-bot": { segment: "global", cookies: [], ...withCookie(`es_uid=${UID}`, {
    "mf-cf-blob": JSON.stringify({ country: "US", botManagement: { verifiedBot: true } }) }) },
  ...Object.fromEntries(Object.entries(ODD_PROFILES).map(
    ([visitor, [uid, , segment]]) => [visitor, { segment, ...withCookie(`es_uid=${uid}`) }])),
};

/**
 * Drains workerd's stdout/stderr (a log line per request), keeps stderr's tail and feeds each
 * stdout line to the KV meter (bench/lib/kvmodel.mjs: the latency wrapper's counting lines).
 */
export function makeStdio() {
  const state = { stdoutBytes: 0, stderrTail: "", meter: new KvMeter() };
  let partial = "";
  const handle = (stdout, stderr) => {
    stdout.on("data", (chunk) => {
      state.stdoutBytes += chunk.length;
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop();
      for (const line of lines) state.meter.line(line);
    });
    stderr.on("data", (chunk) => {
      state.stderrTail = (state.stderrTail + chunk.toString()).slice(-4000);
    });
  };
  return { state, handle };
}

export async function seed(kv) {
  const ids = Array.from({ length: 50 }, (_, i) => `v${String(i).padStart(3, "0")}-music`);
  const segment = (list) => JSON.stringify({ built_at: 1763900000, ids: list, version: 3 });
  await kv.put(`u:${UID}`, JSON.stringify(PROFILE));
  for (const [uid, profile] of Object.values(ODD_PROFILES)) await kv.put(`u:${uid}`, profile);
  await kv.put("seg:us-en-music:v3", segment(ids));
  await kv.put("seg:us-en-default:v3", segment(ids.map((id) => id.replace("music", "top"))));
  await kv.put("seg:global:v3", segment(ids.map((id) => id.replace("music", "global"))));
  for (const size of Object.keys(SIZES)) {
    await kv.put(`shell:b${size}`, JSON.stringify({ path: "/", version: SHELL_VERSION }));
  }
}

async function get(url, headers) {
  const r = await fetch(url, { headers });
  const body = await r.text();
  return { status: r.status, headers: [...r.headers], body };
}

const fromCache = (res, target) =>
  target.kind === "floor"
    ? res.headers.some(([k, v]) => k === "cf-cache-status" && v === "HIT")
    : res.headers.some(([k, v]) => k === "server-timing" && /desc=(cache|memory)/.test(v));

/**
 * Publish the shell of this size (the origin pads it) as its version's copy in KV, with the
 * origin's kept headers, as `edgeshelf-builder publish-shell` does, then fill every target's
 * cache with it. Pinned to its copy, the shell is cached for good; the origin's page alone would
 * be cached NO_POINTER_SHELL_TTL seconds, and refilled mid-run from an origin padded for
 * another size.
 */
export async function fillCaches(stack, targets, urls, size) {
  const r = await fetch(`${stack.origin}/__origin/config`, {
    method: "POST",
    body: JSON.stringify({ mode: "ok", pad_bytes: SIZES[size] }),
  });
  if (!r.ok) throw new Error(`origin config failed: ${r.status}`);
  const page = await fetch(`${stack.origin}/`, { headers: { accept: "text/html" } });
  const rules = peerRules();
  const copy = {
    format: rules.shell_copy_format,
    headers: keptHeaders([...page.headers], loadRules({ EDGESHELF_RULES: rules })),
    html: await page.text(),
  };
  const kv = await stack.mf.getKVNamespace("EDGESHELF_KV");
  await kv.put(`shell:b${size}:${SHELL_VERSION}`, JSON.stringify(copy));
  for (const target of targets) {
    let res;
    for (let i = 0; i < 50; i++) {
      res = await get(`${urls[target.key]}/b${size}`, VISITORS.known);
      if (res.status === 200 && fromCache(res, target)) break;
      await new Promise((done) => setTimeout(done, 50));
    }
    if (!fromCache(res, target)) throw new Error(`${target.key} never served b${size} from cache`);
    if (res.body.length < SIZES[size] * 0.9) {
      throw new Error(`${target.key} served ${res.body.length} bytes for b${size}`);
    }
  }
}

const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/g;
const AUD_TAG_RE = /(es_aud=a1\.[a-z]{2}\.[a-z]{2,3}\.[a-z0-9_]{1,32}\.[kr]\.)[0-9a-f]{8}/g;

export function normalizedHeaders(res) {
  const skip = new Set(["date", "transfer-encoding", "content-length"]);
  return res.headers
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => [
      k,
      v.replace(/dur=\d+(\.\d+)?/g, "dur=N").replace(UUID_RE, "UID").replace(AUD_TAG_RE, "$1TAG"),
    ]);
}

/** Problems with an audience cookie a response sets: its tag must be that of the es_uid set. */
function audienceProblems(res) {
  const cookies = res.headers.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  const uid = cookies.map((c) => /^es_uid=([^;]+)/.exec(c)?.[1]).find(Boolean);
  return cookies
    .filter((c) => c.startsWith("es_aud=") && (uid === undefined ||
      /^es_aud=a1\.[^;]*\.([0-9a-f]{8});/.exec(c)?.[1] !== uidTag(uid)))
    .map((c) => `es_aud without the tag of the es_uid set with it: ${c}`);
}

const SHELF_RE = /<script type="application\/json" id="edgeshelf-shelf">([^<]*)<\/script>/;
/** The injected shelf's payload ({ids, segment, fallback, schema}), or null. */
export function shelfOf(body) {
  const m = SHELF_RE.exec(body);
  return m === null ? null : JSON.parse(m[1]);
}

/**
 * What edgeshelf's own answer must show for a parity visitor: its shelf, the cookies it sets,
 * and the origin's security headers (kept from every shell source).
 */
function expectationProblems(res, spec) {
  const problems = [];
  const shelf = shelfOf(res.body);
  if (shelf === null) problems.push("no shelf injected");
  else if (spec.segment !== undefined && shelf.segment !== spec.segment) {
    problems.push(`edgeshelf served ${shelf.segment}, the scenario needs ${spec.segment}`);
  }
  const cookies = res.headers.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  if (spec.cookies !== undefined && (cookies.length !== spec.cookies.length ||
      spec.cookies.some((start, i) => !cookies[i].startsWith(start)))) {
    problems.push(`edgeshelf set ${JSON.stringify(cookies)}, the scenario needs ` +
      JSON.stringify(spec.cookies));
  }
  if (!res.headers.some(([k]) => k === "content-security-policy")) {
    problems.push("edgeshelf dropped the origin's Content-Security-Policy");
  }
  return problems;
}

/** Whether a Worker issues the audience cookie: one request from a new visitor tells. */
export async function issuesAudience(url, size) {
  const res = await get(`${url}/b${size}`, VISITORS.cold);
  return res.headers.some(([k, v]) => k === "set-cookie" && v.startsWith("es_aud="));
}

/**
 * edgeshelf and the JS peer must answer byte-for-byte alike, or the comparison means nothing.
 * `bodyOnly` compares status and bodies only: for the naive JS peer, whose read path (and so
 * its Server-Timing source and its cookies) differs by design.
 */
export async function parity(urls, size, a = "edgeshelf", b = "js-peer", { bodyOnly = false } = {}) {
  const out = [];
  for (const [visitor, spec] of Object.entries(PARITY_VISITORS)) {
    if (spec.notNaive && bodyOnly) continue;
    const py = await get(`${urls[a]}/b${size}`, spec.headers);
    const js = await get(`${urls[b]}/b${size}`, spec.headers);
    const diffs = [];
    if (py.status !== js.status) diffs.push(`status ${py.status} != ${js.status}`);
    const ph = JSON.stringify(normalizedHeaders(py));
    const jh = JSON.stringify(normalizedHeaders(js));
    if (ph !== jh && !bodyOnly) diffs.push(`headers ${ph} != ${jh}`);
    if (!bodyOnly) diffs.push(...audienceProblems(py), ...audienceProblems(js));
    if (py.body !== js.body) {
      let at = 0;
      while (at < py.body.length && py.body[at] === js.body[at]) at++;
      diffs.push(`bodies differ at ${at}: ${JSON.stringify(py.body.slice(at, at + 80))} vs ` +
        JSON.stringify(js.body.slice(at, at + 80)));
    }
    diffs.push(...expectationProblems(py, spec));
    out.push({
      size, visitor, ...(bodyOnly ? { peer: b, body_only: true } : {}), ok: diffs.length === 0,
      bytes: py.body.length, segment: shelfOf(py.body)?.segment ?? null, diffs,
    });
  }
  return out;
}

export async function measure(cell, urls, workerdPid, durationS) {
  const headers = cell.visitor === "cold" ? VISITORS.cold : VISITORS.known;
  const before = cpuTicks(workerdPid);
  const nodeBefore = process.cpuUsage();
  const w = await runWrk({
    url: `${urls[cell.target]}/b${cell.size}`, connections: cell.conns, durationS, headers,
  });
  const ticks = cpuTicks(workerdPid) - before;
  const node = process.cpuUsage(nodeBefore);
  const seconds = w.duration_us / 1e6;
  return {
    ...cell,
    requests: w.requests,
    rps: w.requests / seconds,
    p50_us: w.p50_us,
    p90_us: w.p90_us,
    p99_us: w.p99_us,
    mean_us: w.mean_us,
    max_us: w.max_us,
    bytes_per_req: w.requests ? w.bytes / w.requests : 0,
    workerd_cpu_ms_per_req: w.requests ? (ticks * 1000) / CLK_TCK / w.requests : null,
    workerd_cpu_util: (ticks / CLK_TCK) / seconds,
    node_cpu_ms_per_req: w.requests ? (node.user + node.system) / 1000 / w.requests : null,
    loadavg_1m: os.loadavg()[0], // other work on the machine shows up here
    errors: w.connect_errors + w.read_errors + w.write_errors + w.timeouts,
    non2xx: w.non2xx,
  };
}

/**
 * AUDIENCE_TTL for every Worker of a run: the one asked for (`requested`, seconds), or with
 * `auto` wrangler.toml's (the spec's 3600 without it), which `startFilled` turns into 0 when
 * edgeshelf's Worker issues no audience cookie. This is the one switch that keeps the
 * same-algorithm peer (which has the cookie) answering like an edgeshelf without it.
 */
export function audienceSetting(requested) {
  const configured = readWranglerConfig().vars.AUDIENCE_TTL ?? "3600";
  return {
    requested,
    ttl: requested === "auto" ? Number(configured) : requested,
    edgeshelf_issues: null,
  };
}

/**
 * startBench with `audience.ttl` for every target, the caches filled with each size's shell;
 * with `audience.requested` auto, started again with AUDIENCE_TTL=0 when the first edgeshelf
 * target issues no es_aud (`audience` records what was found and used).
 */
export async function startFilled(targets, sizes, audience, { log, kvModes = null }) {
  const start = () => startBench(targets, {
    log, kvModes, vars: { AUDIENCE_TTL: String(audience.ttl) },
  });
  const edgeshelf = targets.find((t) => t.id === "edgeshelf")?.key;
  let bench = await start();
  try {
    for (const size of sizes) {
      log(`filling caches with the ${size} shell`);
      await fillCaches(bench.stack, targets, bench.urls, size);
    }
    if (audience.ttl > 0 && audience.edgeshelf_issues === null && edgeshelf !== undefined) {
      audience.edgeshelf_issues = await issuesAudience(bench.urls[edgeshelf], sizes[0]);
      if (!audience.edgeshelf_issues && audience.requested === "auto") {
        log("edgeshelf's Worker issues no audience cookie: every Worker runs with AUDIENCE_TTL=0");
        audience.ttl = 0;
        await bench.stack.dispose();
        bench = await start();
        for (const size of sizes) await fillCaches(bench.stack, targets, bench.urls, size);
      }
    }
  } catch (err) {
    await bench.stack.dispose();
    throw err;
  }
  return bench;
}

/**
 * One Miniflare (one workerd) with the given targets, each on a direct socket, the KV seeded.
 * `targets`: [{key, id, kind, srcDir?}]; `vars` overrides [vars] for every target alike;
 * `kvModes` ({name: model}) gives every target its KV through the latency wrapper
 * (bench/lib/kvmodel.mjs), the first model active; `kvFaults` gives every target its KV through
 * the local stack's fault wrapper (scripts/local/kvfaults.mjs) instead.
 * Resolves to {stack, urls, workerdPid, stdio, vars}.
 */
export async function startBench(targets, options) {
  // A port found free can be taken (by an outgoing connection's ephemeral port, or another
  // process on the machine) before workerd binds it: then start again on other ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startBenchOnce(targets, options);
    } catch (err) {
      if (attempt >= 3 || !/Address already in use/.test(err.message)) throw err;
      options.log(`a port was taken before workerd bound it; starting again (${attempt})`);
    }
  }
}

async function startBenchOnce(targets, {
  log, vars: overrides = {}, kvModes = null, kvFaults = false,
}) {
  const config = readWranglerConfig();
  const [port, apiPort, originPort, ...sockets] = await Promise.all(
    Array.from({ length: 3 + targets.length }, () => freePort()),
  );
  const vars = {
    ...config.vars,
    ORIGIN_URL: `http://${HOST}:${originPort}`,
    DEBUG_HEADERS: "0",
    PERSONALIZED_PATHS: ["/", ...Object.keys(SIZES).map((s) => `/b${s}`)].join(","),
    ...overrides,
  };
  const urls = {};
  const extraWorkers = targets.map((t, i) => {
    urls[t.key] = `http://${HOST}:${sockets[i]}`;
    return targetOptions(t.id, {
      bindings: vars, socket: { host: HOST, port: sockets[i] }, name: `bench-${t.key}`,
      srcDir: t.srcDir, kvModes, kvFaults,
    });
  });
  if (kvModes) extraWorkers.push(wrapperWorker(config.kvNamespaces));
  const stdio = makeStdio();
  log("starting one Miniflare with", targets.map((t) => t.key).join(", "));
  let stack;
  try {
    stack = await startStack({
      port, apiPort, originPort, host: HOST, vars, extraWorkers, logLevel: "quiet",
      handleRuntimeStdio: stdio.handle, withWorker: false, kvFaults,
    });
  } catch (err) {
    // Let workerd's own words explain a failed start (the drain swallowed them).
    await new Promise((done) => setTimeout(done, 100));
    throw new Error(`${err.message}\nworkerd stderr:\n${stdio.state.stderrTail}`);
  }
  try {
    const pids = workerdPids();
    if (pids.length !== 1) throw new Error(`expected one workerd process, found ${pids}`);
    await seed(await stack.mf.getKVNamespace("EDGESHELF_KV"));
    return { stack, urls, workerdPid: pids[0], stdio, vars };
  } catch (err) {
    await stack.dispose();
    throw err;
  }
}
