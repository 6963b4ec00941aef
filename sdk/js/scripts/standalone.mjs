//! Starts a real `imcloud standalone` for the JS tests and scripts (the SDK's integration test, the
//! OpenAPI type check, the web client's browser tests): free loopback ports, its own SQLite file in a
//! fresh temporary directory, fixed test secrets. Invariants: `start()` resolves only once the api and
//! the websocket listener answer (retrying with new ports if one was taken meanwhile), and `stop()`
//! ends the process (SIGTERM, then SIGKILL after 10 s) and removes its directory.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = "js-test-secret";
export const API_KEY = "js-test-api-key";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");

/** The binary: $IMCLOUD_BIN, else the debug build of this checkout. */
export function binaryPath() {
  return process.env.IMCLOUD_BIN ?? path.join(repo, "target/debug/imcloud");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/**
 * @typedef {{ http: string, ws: string, wsPort: number, dir: string, pid: number, log: () => string,
 *   stop: () => Promise<void> }} Standalone
 */

/**
 * @param {{ env?: Record<string, string>, bin?: string }} [opts]
 * @returns {Promise<Standalone>}
 */
export async function startStandalone(opts = {}) {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const s = await tryStart(opts);
    if (s) return s;
    console.warn(`imcloud standalone exited during start-up (attempt ${attempt}); retrying with new ports`);
  }
  throw new Error("imcloud standalone did not start in 3 attempts");
}

async function tryStart(opts) {
  const ports = [];
  while (ports.length < 5) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [ws, tcp, grpc, logic, http] = ports;
  const dir = mkdtempSync(path.join(os.tmpdir(), "imcloud-js-"));
  const addr = (p) => `127.0.0.1:${p}`;
  const env = {
    ...process.env,
    IMCLOUD_AUTH_SECRET: SECRET,
    IMCLOUD_API_KEY: API_KEY,
    IMCLOUD_COMET_WS_ADDR: addr(ws),
    IMCLOUD_COMET_TCP_ADDR: addr(tcp),
    IMCLOUD_COMET_GRPC_ADDR: addr(grpc),
    IMCLOUD_LOGIC_GRPC_ADDR: addr(logic),
    IMCLOUD_API_HTTP_ADDR: addr(http),
    IMCLOUD_ONLINE_RENEW_SECS: "1",
    IMCLOUD_DATABASE_URL: `sqlite://${dir}/im.db`,
    RUST_LOG: process.env.RUST_LOG ?? "warn",
    ...opts.env,
  };
  const child = spawn(opts.bin ?? binaryPath(), ["standalone"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => {
    log = (log + d.toString()).slice(-20_000);
  });
  let exited = false;
  const exit = new Promise((resolve) => child.once("exit", () => resolve(undefined)));
  child.once("exit", () => {
    exited = true;
  });
  child.once("error", (e) => {
    log += `\nspawn failed: ${e.message}`;
    exited = true;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      rmSync(dir, { recursive: true, force: true });
      if (log.includes("spawn failed")) throw new Error(log);
      return null;
    }
    const apiUp = await fetch(`http://${addr(http)}/healthz`).then((r) => r.ok, () => false);
    if (apiUp && (await portOpen(ws))) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`imcloud standalone did not start within 30 s; its log:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    http: `http://${addr(http)}`,
    ws: `ws://${addr(ws)}/sub`,
    wsPort: ws,
    dir,
    pid: child.pid ?? 0,
    log: () => log,
    stop: async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
