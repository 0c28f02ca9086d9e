// Processes the benchmark measures: wrk runs, and the CPU time of the workerd process.
import { execFile } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WRK_SCRIPT = path.join(HERE, "..", "wrk-report.lua");
// Linux reports process CPU in clock ticks; 100 per second on every kernel config we meet.
export const CLK_TCK = 100;

/** A free TCP port on the loopback interface. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function statFields(pid) {
  const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name is in parentheses and may contain spaces; fields follow the last ')'.
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** user + system CPU ticks of a process (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuTicks(pid) {
  const f = statFields(pid);
  return Number(f[11]) + Number(f[12]);
}

/** PIDs of the workerd processes started by this Node process (Miniflare's children). */
export function workerdPids(parent = process.pid) {
  const out = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const comm = fs.readFileSync(`/proc/${name}/comm`, "utf8").trim();
      if (comm === "workerd" && Number(statFields(name)[1]) === parent) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Run wrk once; resolves to the parsed WRKJSON line plus the command line used. */
export function runWrk({ url, connections, durationS, headers = {} }) {
  const args = ["-t1", `-c${connections}`, `-d${durationS}s`, "--timeout", "10s", "-s", WRK_SCRIPT];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile("wrk", args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
        return;
      }
      const line = stdout.split("\n").find((l) => l.startsWith("WRKJSON "));
      if (!line) {
        reject(new Error(`wrk printed no WRKJSON line:\n${stdout}\n${stderr}`));
        return;
      }
      resolve(JSON.parse(line.slice("WRKJSON ".length)));
    });
  });
}

/** `wrk -v` first line, e.g. "wrk debian/4.1.0-3+b2 [epoll]". */
export function wrkVersion() {
  return new Promise((resolve) => {
    execFile("wrk", ["-v"], (_err, stdout, stderr) => {
      const first = `${stdout}${stderr}`.split("\n")[0] ?? "";
      resolve(first.replace(/\s*Copyright.*$/, "").trim());
    });
  });
}
