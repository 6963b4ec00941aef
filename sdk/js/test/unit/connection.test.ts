// The connection's state machine against scripted comets (test/unit/scripted_comet.ts): the drain
// reconnect hint, dead-link detection, fatal closes that must not be retried, backoff, request
// timeouts, unknown ops, and rooms and filters re-applied after a reconnect.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { Connection, type ConnectionOptions } from "../../src/connection.js";
import { NotConnectedError, TimeoutError } from "../../src/errors.js";
import * as op from "../../src/ops.js";
import { ScriptedComet } from "./scripted_comet.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function comet(script = {}) {
  const c = await ScriptedComet.start(script);
  cleanup.push(() => c.close());
  return c;
}

function connect(opts: Partial<ConnectionOptions> & Pick<ConnectionOptions, "url">) {
  const conn = new Connection({
    auth: { mid: 7, token: "t", platform: "web" },
    WebSocket: WebSocket as never,
    heartbeatMs: 60_000,
    backoff: { baseMs: 50, maxMs: 200, jitter: 0 },
    watchNetwork: false,
    ...opts,
  });
  cleanup.push(() => conn.stop());
  return conn;
}

function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() > deadline) reject(new Error("condition not met in time"));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

describe("Connection", () => {
  it("authenticates with the credentials, the auth room and the filter", async () => {
    const c = await comet();
    const conn = connect({ url: c.url, room: "live://1", accepts: [1000, 1001] });
    conn.start();
    const s = await c.authed(1);
    expect(s.auth).toEqual({ mid: 7, token: "t", platform: "web", room_id: "live://1", accepts: [1000, 1001] });
    await until(() => conn.isOpen);
  });

  it("follows a reconnect hint: waits delay_ms, goes to the hinted url, counts no failure", async () => {
    const a = await comet();
    const b = await comet();
    const conn = connect({ url: a.url, random: () => 0 });
    const closes: { retryInMs: number | null; kind: string }[] = [];
    conn.on("close", (e) => closes.push({ retryInMs: e.retryInMs, kind: e.info.kind }));
    conn.start();
    const first = await a.authed(1);
    await until(() => conn.isOpen);
    first.send(op.RECONNECT_HINT, 0, JSON.stringify({ reason: "draining", delay_ms: 300, url: b.url }));
    first.closeWith("server shutting down", 1001);
    const started = Date.now();
    await b.authed(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(closes).toEqual([{ retryInMs: 300, kind: "shutdown" }]);
    await until(() => conn.isOpen);
    expect(conn.url).toBe(b.url);
    // The hinted url is used once: a later plain drop goes back to the configured one.
    b.conns[0]!.ws.terminate();
    await a.authed(2);
  });

  it("ignores unknown ops from 22 to 999 and delivers application ops from batches", async () => {
    const c = await comet();
    const conn = connect({ url: c.url });
    const pushes: number[] = [];
    conn.on("push", (f) => pushes.push(f.op));
    conn.start();
    const s = await c.authed(1);
    await until(() => conn.isOpen);
    s.send(23, 0, "room history, later");
    s.send(500, 0, "?");
    s.push(1000, "{}");
    await until(() => pushes.length === 1);
    expect(pushes).toEqual([1000]);
    expect(conn.isOpen).toBe(true);
  });

  it("detects a dead link (no heartbeat reply) and reconnects", async () => {
    const c = await comet({ answerHeartbeats: false });
    const conn = connect({ url: c.url, heartbeatMs: 100, heartbeatTimeoutMs: 200 });
    const kinds: string[] = [];
    conn.on("close", (e) => kinds.push(e.info.kind));
    conn.start();
    await c.authed(2);
    expect(kinds[0]).toBe("client");
  });

  it("never retries a refused or expired token", async () => {
    const c = await comet({
      onAuth: (s: { closeWith: (r: string) => void }) => {
        s.closeWith("auth failed: token expired");
        return false;
      },
    });
    const conn = connect({ url: c.url });
    const closes: { fatal: boolean; retryInMs: number | null }[] = [];
    conn.on("close", (e) => closes.push({ fatal: e.info.fatal, retryInMs: e.retryInMs }));
    conn.start();
    await until(() => closes.length === 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(c.conns.length).toBe(1);
    expect(closes).toEqual([{ fatal: true, retryInMs: null }]);
    expect(conn.state).toBe("idle");
  });

  it("backs off while the server cannot be reached, then connects", async () => {
    const c = await comet();
    const url = c.url;
    await c.close();
    cleanup.pop();
    const conn = connect({ url });
    const delays: (number | null)[] = [];
    conn.on("close", (e) => delays.push(e.retryInMs));
    conn.start();
    await until(() => delays.length >= 3);
    expect(delays.slice(0, 3)).toEqual([50, 90, 162]);
  });

  it("times out a request without a reply, and refuses requests while closed", async () => {
    const c = await comet();
    const conn = connect({ url: c.url });
    await expect(conn.command({ cmd: "ping" })).rejects.toBeInstanceOf(NotConnectedError);
    conn.start();
    await c.authed(1);
    await until(() => conn.isOpen);
    await expect(conn.command({ cmd: "ping" }, 100)).rejects.toBeInstanceOf(TimeoutError);
  });

  it("re-applies extra rooms and unsubscribed ops after a reconnect", async () => {
    const joined: string[] = [];
    const c = await comet({
      onFrame: (s: { send: (o: number, seq: number, b: string) => void }, f: { op: number; seq: number; body: Uint8Array }) => {
        const body = new TextDecoder().decode(f.body);
        if (f.op === op.JOIN_ROOM) {
          joined.push(body);
          s.send(op.JOIN_ROOM_REPLY, f.seq, JSON.stringify({ code: 0, message: "ok", rooms: [body], auth_room: null }));
        }
        if (f.op === op.UNSUB) s.send(op.UNSUB_REPLY, f.seq, body);
      },
    });
    const conn = connect({ url: c.url });
    conn.start();
    const first = await c.authed(1);
    await until(() => conn.isOpen);
    expect(await conn.joinRoom("chat://9")).toEqual({ rooms: ["chat://9"], auth_room: null });
    await conn.unsubscribeOps([1003]);
    first.ws.terminate();
    const second = await c.authed(2);
    await until(() => joined.length === 2 && second.frames.some((f) => f.op === op.UNSUB));
    expect(joined).toEqual(["chat://9", "chat://9"]);
    expect(conn.rooms).toEqual(["chat://9"]);
  });
});
