// The SDK against a real `imcloud standalone` (started by scripts/standalone.mjs): the typed API, live
// delivery, sync after a reconnect and after a network drop (a TCP proxy the test cuts), op 4 commands,
// rooms and op filters with backend pushes, and the closes that must not be retried. Node 20 has no
// global WebSocket, so the `ws` package is injected, as an app on Node 20 would do.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { ApiError, CommandError, Connection, ImApi, ImClient, discoverComets, type Message } from "../../src/index.js";
// @ts-expect-error: a plain ESM script without type declarations
import { API_KEY, startStandalone } from "../../scripts/standalone.mjs";

interface Server {
  http: string;
  ws: string;
  wsPort: number;
  log: () => string;
  stop: () => Promise<void>;
}

let server: Server;
let n = 0;

beforeAll(async () => {
  server = await startStandalone({ env: { IMCLOUD_HEARTBEAT_SECS: "2" } });
});

afterAll(async () => {
  await server?.stop();
});

function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

async function user(name: string) {
  const email = `${name}-${process.pid}-${++n}@example.com`;
  const api = new ImApi({ baseUrl: server.http });
  const u = await api.register({ email, nickname: name, password: `${name}-secret-1` });
  return { email, password: `${name}-secret-1`, user: u };
}

function client(wsUrls?: string[]) {
  return new ImClient({
    apiBase: server.http,
    WebSocket: WebSocket as never,
    wsUrls,
    backoff: { baseMs: 100, maxMs: 1000 },
  });
}

async function friends(a: ImClient, b: ImClient) {
  const req = await a.api.sendFriendRequest({ to_user_id: b.user!.id, note: "hi" });
  await b.api.acceptFriendRequest(req.id);
}

function collect(c: ImClient) {
  const got: Message[] = [];
  c.on("message", ({ message }) => got.push(message));
  return got;
}

async function push(path: string, body: string) {
  const res = await fetch(`${server.http}${path}`, { method: "POST", headers: { Authorization: `Bearer ${API_KEY}` }, body });
  expect(res.status).toBe(200);
}

/** A TCP proxy to the comet that the test can cut (a dropped network) and restore. */
async function proxy(targetPort: number) {
  const sockets = new Set<net.Socket>();
  let down = false;
  const srv = net.createServer((c) => {
    if (down) {
      c.destroy();
      return;
    }
    const up = net.connect(targetPort, "127.0.0.1");
    sockets.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
    };
    c.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/sub`,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      down = false;
    },
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
}

describe("SDK against a real standalone", () => {
  it("discovers the comet and the heartbeat interval from the api", async () => {
    const d = await discoverComets(server.http);
    expect(d.urls).toEqual([server.ws]);
    expect(d.heartbeatMs).toBe(2000);
  });

  it("reports API refusals in the server's words", async () => {
    const api = new ImApi({ baseUrl: server.http });
    const err = await api.login({ email: "nobody@example.com", password: "wrong-password" }).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 401, code: "unauthenticated" });
    const unreachable = await new ImApi({ baseUrl: "http://127.0.0.1:9" }).me().catch((e) => e);
    expect(unreachable).toMatchObject({ status: 0, code: "network" });
  });

  it("delivers live messages once and in order, and after a reconnect syncs exactly what was missed", async () => {
    const [ua, ub] = [await user("ann"), await user("ben")];
    const a = client();
    const b = client();
    await a.login(ua.email, ua.password);
    await b.login(ub.email, ub.password);
    await friends(a, b);
    const got = collect(b);
    const opened: boolean[] = [];
    b.on("synced", () => opened.push(true));
    await a.connect();
    await b.connect();
    await until(() => a.connectionState === "open" && b.connectionState === "open" && opened.length > 0, "both connected");
    const cid = `u-${Math.min(ua.user.id, ub.user.id)}-${Math.max(ua.user.id, ub.user.id)}`;

    for (let i = 1; i <= 5; i++) await a.send(cid, `live ${i}`);
    await until(() => got.length === 5, "5 live messages");

    b.disconnect();
    await until(() => b.connectionState === "idle", "b disconnected");
    for (let i = 1; i <= 4; i++) await a.send(cid, `missed ${i}`);
    await b.connect();
    await until(() => got.length === 9, "9 messages");
    await new Promise((r) => setTimeout(r, 500));
    expect(got.map((m) => m.content)).toEqual([...[1, 2, 3, 4, 5].map((i) => `live ${i}`), ...[1, 2, 3, 4].map((i) => `missed ${i}`)]);
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new Set(got.map((m) => m.id)).size).toBe(9);
    expect(b.heldSeq(cid)).toBe(9);
    a.disconnect();
    b.disconnect();
  });

  it("survives a network drop: reconnects by itself, nothing lost or duplicated, sends fall back to HTTP", async () => {
    const [ua, ub] = [await user("cat"), await user("dan")];
    const net1 = await proxy(server.wsPort);
    const a = client();
    const b = client([net1.url]);
    await a.login(ua.email, ua.password);
    await b.login(ub.email, ub.password);
    await friends(a, b);
    const got = collect(b);
    const closes: string[] = [];
    b.on("connection", (e) => e.info && closes.push(e.info.kind));
    await a.connect();
    await b.connect();
    await until(() => a.connectionState === "open" && b.connectionState === "open", "both connected");
    const cid = `u-${Math.min(ua.user.id, ub.user.id)}-${Math.max(ua.user.id, ub.user.id)}`;
    await a.send(cid, "before");
    await until(() => got.length === 1, "first message");

    net1.cut();
    await until(() => b.connectionState === "waiting", "b notices the drop");
    // While b is cut off: a sends, and b sends too (over HTTP, since its socket is down).
    await a.send(cid, "during 1");
    const own = await b.send(cid, "from b while offline");
    expect(own.seq).toBe(3);
    await a.send(cid, "during 2");
    net1.restore();
    await until(() => got.length === 4, "all 4 messages", 30_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(got.map((m) => m.content)).toEqual(["before", "during 1", "from b while offline", "during 2"]);
    expect(closes[0]).toBe("network");
    a.disconnect();
    b.disconnect();
    await net1.close();
  });

  it("runs op 4 commands as promises, rooms and op filters, with backend pushes", async () => {
    const u = await user("eve");
    const c = client();
    await c.login(u.email, u.password);
    const pushes: { op: number; body: string }[] = [];
    await c.connect();
    await until(() => c.connectionState === "open", "connected");
    const conn = c.connection!;
    conn.on("push", (f) => pushes.push({ op: f.op, body: new TextDecoder().decode(f.body) }));

    const pong = await conn.command<{ pong: boolean; mid: number; key: string }>({ cmd: "ping" });
    expect(pong).toMatchObject({ pong: true, mid: u.user.id });
    expect(pong.key.startsWith("web:")).toBe(true);
    const bad = await conn.command({ cmd: "dance" }).catch((e) => e);
    expect(bad).toBeInstanceOf(CommandError);
    expect(bad).toMatchObject({ code: -400, errorCode: "invalid_argument" });

    const joined = await conn.joinRoom("live://77");
    expect(joined.rooms).toContain("live://77");
    await push("/goim/push/room?operation=1000&type=live&room=77", "room hello");
    await until(() => pushes.some((p) => p.body === "room hello"), "the room push");
    await conn.leaveRoom("live://77");
    await push("/goim/push/room?operation=1000&type=live&room=77", "room after leave");

    await conn.unsubscribeOps([1010]);
    await push(`/goim/push/mids?operation=1010&mids=${u.user.id}`, "filtered out");
    await push(`/goim/push/mids?operation=1011&mids=${u.user.id}`, "kept");
    await until(() => pushes.some((p) => p.body === "kept"), "the unfiltered push");
    await new Promise((r) => setTimeout(r, 1000));
    expect(pushes.map((p) => p.body)).toEqual(["room hello", "kept"]);
    c.disconnect();
  });

  it("stops for good on logout and on a refused token, without retrying", async () => {
    const u = await user("fay");
    const c = client();
    await c.login(u.email, u.password);
    const kicked: string[] = [];
    c.on("kicked", (i) => kicked.push(i.kind));
    await c.connect();
    await until(() => c.connectionState === "open", "connected");
    // Log out with another handle on the same login: the server closes the connection.
    const other = new ImApi({ baseUrl: server.http, token: c.token });
    await other.logout();
    await until(() => kicked.length === 1, "the logout close");
    expect(kicked).toEqual(["logged_out"]);
    expect(c.connectionState).toBe("idle");

    const opens: number[] = [];
    const closes: { kind: string; retry: number | null }[] = [];
    const conn = new Connection({
      url: server.ws,
      auth: { mid: u.user.id, token: "not-a-token" },
      WebSocket: WebSocket as never,
      backoff: { baseMs: 50 },
      watchNetwork: false,
    });
    conn.on("open", () => opens.push(1));
    conn.on("close", (e) => closes.push({ kind: e.info.kind, retry: e.retryInMs }));
    conn.start();
    await until(() => closes.length === 1, "the refusal");
    await new Promise((r) => setTimeout(r, 1000));
    expect(opens).toEqual([]);
    expect(closes).toEqual([{ kind: "auth_refused", retry: null }]);
  });
});
