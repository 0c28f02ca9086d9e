// The Workers under test, as Miniflare worker options: each gets its own direct socket, so
// every request takes the same path into workerd (none goes through Miniflare's entry router).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pythonWorkerOptions, readWranglerConfig, ROOT } from "../../scripts/local/stack.mjs";
import { wrappedKv } from "./kvmodel.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WORKERS = path.join(HERE, "..", "workers");
const JS_COMPAT_DATE = "2024-11-01"; // the offline runtime's date, used for the Python Workers too

export const TARGETS = [
  { id: "py-floor", label: "Python passthrough", lang: "python", kind: "floor" },
  { id: "js-floor", label: "JavaScript passthrough", lang: "js", kind: "floor" },
  // The same algorithm as edgeshelf (isolate memory for segments and the split shell): the
  // like-for-like peer, checked against edgeshelf byte for byte.
  { id: "js-peer", label: "JavaScript read path (same algorithm)", lang: "js", kind: "read-path" },
  // The read path as a JavaScript team would first write it (KV, cache match and HTMLRewriter
  // per request): a second reference, checked against edgeshelf by body only.
  { id: "js-naive", label: "JavaScript read path (naive)", lang: "js", kind: "read-path",
    parity: "body" },
  { id: "edgeshelf", label: "edgeshelf (Python)", lang: "python", kind: "read-path" },
];

let RULES = null;

/**
 * The rules the JavaScript peers share with edgeshelf's Worker (dropped origin headers, crawler
 * tokens, the shell copy's format, ...), dumped from the Python definitions by bench/peer_rules.py
 * once per process: the peers get them as their EDGESHELF_RULES binding, never as a copy.
 */
export function peerRules() {
  if (RULES === null) {
    const venvPython = path.join(ROOT, ".venv", "bin", "python");
    const [cmd, args] = fs.existsSync(venvPython)
      ? [venvPython, []] : ["uv", ["run", "--no-sync", "python"]];
    const out = execFileSync(cmd, [...args, "-m", "bench.peer_rules"], {
      cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"],
    });
    RULES = JSON.parse(out);
  }
  return RULES;
}

function jsWorker(name, file, { kvNamespaces, bindings, extra }) {
  return {
    name,
    modules: true,
    scriptPath: path.isAbsolute(file) ? file : path.join(WORKERS, file),
    compatibilityDate: JS_COMPAT_DATE,
    kvNamespaces,
    bindings,
    ...extra,
  };
}

/**
 * Miniflare options for one target; `socket` ({host, port}) adds a direct socket. `srcDir`
 * replaces edgeshelf's source tree (or, for a JS peer, its script) for A/B comparisons.
 * `kvModes` ({name: model}, bench/lib/kvmodel.mjs) gives the target its KV namespaces through
 * the latency wrapper, under the same binding names, instead of directly; the run must then
 * include `wrapperWorker(...)` among its Workers. `kvFaults` gives it its KV namespaces through
 * the local stack's fault wrapper instead (scripts/local/kvfaults.mjs; the stack must be
 * started with `kvFaults: true`, which adds one `kv-faults-<binding>` Worker per namespace).
 */
export function targetOptions(id, {
  bindings, socket, name = `bench-${id}`, srcDir, kvModes, kvFaults = false,
}) {
  const config = readWranglerConfig();
  let kvNamespaces = config.kvNamespaces;
  const extra = socket ? { unsafeDirectSockets: [socket] } : {};
  if (kvModes) {
    extra.wrappedBindings = wrappedKv(kvNamespaces, name, kvModes);
    kvNamespaces = {};
  } else if (kvFaults) {
    extra.wrappedBindings = Object.fromEntries(Object.keys(kvNamespaces).map(
      (binding) => [binding, { scriptName: `kv-faults-${binding.toLowerCase()}` }]));
    kvNamespaces = {};
  }
  switch (id) {
    case "py-floor":
      return pythonWorkerOptions({
        name, srcDir: path.join(WORKERS, "pyfloor"), runtime: "offline", kvNamespaces, bindings, extra,
      });
    case "edgeshelf":
      return pythonWorkerOptions({
        name, srcDir: srcDir ?? path.join(ROOT, "src"), runtime: "offline",
        compatibilityFlags: config.compatibilityFlags, kvNamespaces, bindings, extra,
      });
    case "js-floor":
      return jsWorker(name, "jsfloor.mjs", { kvNamespaces, bindings, extra });
    case "js-peer":
      return jsWorker(name, srcDir ?? "jspeer.mjs", {
        kvNamespaces, bindings: { ...bindings, EDGESHELF_RULES: peerRules() }, extra,
      });
    case "js-naive":
      return jsWorker(name, srcDir ?? "jsnaive.mjs", {
        kvNamespaces, bindings: { ...bindings, EDGESHELF_RULES: peerRules() }, extra,
      });
    case "py-import":
      return probeOptions("pyimport", { name, bindings, socket });
    case "py-profile":
      return probeOptions("pyprofile", { name, bindings, socket });
    default:
      throw new Error(`unknown target ${id}`);
  }
}

/**
 * A probe Worker from bench/workers/<dir> with edgeshelf's package shipped beside it: the import
 * probe (its entry imports nothing of ours at start-up and, on `/import/<module>`, imports the
 * `workers` SDK or edgeshelf's handler so each import is measured on its own) and the FFI probe.
 */
function probeOptions(dir, { name, bindings, socket }) {
  const opts = pythonWorkerOptions({
    name, srcDir: path.join(WORKERS, dir), runtime: "offline", bindings,
    extra: socket ? { unsafeDirectSockets: [socket] } : {},
  });
  const pkg = path.join(ROOT, "src", "edgeshelf");
  for (const file of fs.readdirSync(pkg).filter((f) => f.endsWith(".py")).sort()) {
    opts.modules.push({
      type: "PythonModule",
      path: `${opts.modulesRoot}/edgeshelf/${file}`,
      contents: fs.readFileSync(path.join(pkg, file)),
    });
  }
  return opts;
}
