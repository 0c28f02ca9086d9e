// Runs pytest inside production's Pyodide, offline, for the Worker's pure modules:
//
//   node --stack-size=4000 scripts/local/pyodide/pytest.mjs --runtime pyodide-0.28 [pytest args]
//
// The repository and the project's site-packages (.venv, from uv.lock) are mounted; nothing is
// written to them (no bytecode, no pytest cache; hypothesis keeps its database in memory).
// What it takes (../../../README.md, "Runtimes"):
// - a JS stack larger than Node's default (`--stack-size=4000`): hypothesis recurses deeply;
// - a pure-Python hypothesis (pyproject.toml pins the newest release without a compiled part);
// - no tests/conftest.py (`--noconftest`): it starts the local stack and imports the builder,
//   whose duckdb is native; tests that need the builder are marked `cpython_only`;
// - no pytest-timeout (`-p no:timeout`: it needs signal.setitimer), and no pyproject.toml
//   (`-c /dev/null`), so its settings that still apply are given here.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadRuntimePyodide } from "./host.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..", "..");

function sitePackages() {
  const lib = path.join(ROOT, ".venv", "lib");
  for (const py of fs.existsSync(lib) ? fs.readdirSync(lib) : []) {
    const dir = path.join(lib, py, "site-packages");
    if (fs.existsSync(path.join(dir, "pytest"))) return dir;
  }
  throw new Error("no .venv with pytest: run `uv sync` first");
}

async function main() {
  const { values, positionals } = parseArgs({
    options: { runtime: { type: "string" } },
    allowPositionals: true,
    strict: false,
  });
  const py = await loadRuntimePyodide(values.runtime);
  for (const [dir, at] of [[ROOT, "/repo"], [sitePackages(), "/site"]]) {
    py.FS.mkdirTree(at);
    py.FS.mount(py.FS.filesystems.NODEFS, { root: dir }, at);
  }
  py.globals.set("pytest_args", py.toPy(positionals));
  const code = await py.runPythonAsync(`
import os, sys
sys.dont_write_bytecode = True
sys.path[:0] = ["/repo/src", "/repo", "/site"]
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = "/tmp/hypothesis"  # in memory, not the repo
os.chdir("/repo")
import pytest
print(f"pytest in Pyodide {__import__('pyodide').__version__}, Python {sys.version.split()[0]}")
int(pytest.main([
    "--rootdir=/repo", "-c", "/dev/null", "--noconftest",
    "-p", "no:timeout", "-p", "no:cacheprovider",
    "-W", "error", "-o", "xfail_strict=true", "--strict-markers",
    "-o", "markers=cpython_only: needs the builder's native dependencies (duckdb)",
    "-m", "not cpython_only",
    *pytest_args,
]))
`);
  process.exitCode = code;
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exitCode = 2;
});
