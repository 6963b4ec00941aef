// A scripted goim websocket server for the connection's state-machine tests: it answers auth and
// heartbeats like a comet, and each test scripts what the real comet cannot be made to do on demand
// (a drain hint, a dead link, unknown ops). Behaviour that the real comet has is tested against the
// real binary in test/integration.
import { type AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { decodeFrame, encodeBatch, encodeFrame, type Frame } from "../../src/frame.js";
import * as op from "../../src/ops.js";

export interface ScriptedConn {
  ws: WebSocket;
  auth: Record<string, unknown>;
  frames: Frame[];
  send(op: number, seq: number, body?: string | Uint8Array): void;
  push(op: number, body: string): void;
  closeWith(reason: string, code?: number): void;
}

export interface Script {
  /** Reply to op 7; default: op 8. Return false to stay silent. */
  onAuth?: (c: ScriptedConn) => boolean | void;
  /** Reply to op 2 heartbeats; default true. */
  answerHeartbeats?: boolean;
  onFrame?: (c: ScriptedConn, f: Frame) => void;
}

export class ScriptedComet {
  readonly conns: ScriptedConn[] = [];
  script: Script;
  private readonly wss: WebSocketServer;
  private waiters: (() => void)[] = [];

  private constructor(wss: WebSocketServer, script: Script) {
    this.wss = wss;
    this.script = script;
    wss.on("connection", (ws) => this.accept(ws));
  }

  static async start(script: Script = {}): Promise<ScriptedComet> {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/sub" });
    await new Promise<void>((r) => wss.once("listening", () => r()));
    return new ScriptedComet(wss, script);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/sub`;
  }

  /** Resolves once `n` connections have authenticated (sent op 7). */
  async authed(n: number, timeoutMs = 20_000): Promise<ScriptedConn> {
    const deadline = Date.now() + timeoutMs;
    while (this.conns.filter((c) => c.auth).length < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.conns.length} of ${n} connections`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.conns.filter((c) => c.auth)[n - 1]!;
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }

  private accept(ws: WebSocket): void {
    const c: ScriptedConn = {
      ws,
      auth: undefined as unknown as Record<string, unknown>,
      frames: [],
      send: (o, seq, body) => ws.send(encodeFrame(o, seq, body)),
      push: (o, body) => ws.send(encodeBatch([{ ver: 1, op: o, seq: 0, body: new TextEncoder().encode(body) }])),
      closeWith: (reason, code = 1008) => {
        ws.send(encodeFrame(op.DISCONNECT_REPLY, 0, reason));
        ws.close(code, reason.slice(0, 123));
      },
    };
    ws.on("message", (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data));
      c.frames.push(f);
      if (f.op === op.AUTH) {
        c.auth = JSON.parse(new TextDecoder().decode(f.body));
        this.conns.push(c);
        if (this.script.onAuth?.(c) !== false) c.send(op.AUTH_REPLY, f.seq);
        for (const w of this.waiters.splice(0)) w();
      } else if (f.op === op.HEARTBEAT) {
        if (this.script.answerHeartbeats !== false) c.send(op.HEARTBEAT_REPLY, f.seq, new Uint8Array([0, 0, 0, 7]));
      }
      this.script.onFrame?.(c, f);
    });
  }
}
