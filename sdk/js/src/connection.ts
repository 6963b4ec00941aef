//! One logical goim connection to a comet over websocket, kept open across drops: auth (op 7/8),
//! heartbeats at the server's interval with dead-connection detection, reconnect with jittered
//! exponential backoff, the drain reconnect hint (op 22), rooms (ops 12, 18, 20) and op filters (14, 16)
//! re-applied after every reconnect, and requests (op 4 commands and the room/filter ops) matched to
//! their replies by seq, each with a timeout.
//!
//! Invariants:
//! - At most one socket is live at a time; a socket that is given up (dead, timed out) has its handlers
//!   detached first, so a late event from it never touches the current one.
//! - A fatal close (refused or expired token, ended login, replaced device; see close_reason.ts) stops
//!   the connection: it never retries a refused token in a loop. `start()` again (with a fresh token from
//!   the `auth` callback) resumes.
//! - A reconnect hint makes the next attempt wait `delay_ms` plus jitter, go to the hinted url once, and
//!   resets the backoff instead of counting a failure.
//! - Every pending request settles exactly once: by its reply, its timeout, or the close of its socket.
//! - Rooms joined with recovery (op 23, `recoverRooms` / `joinRoomWithRecovery`) keep the position (epoch,
//!   offset) of the last publication (op 25) handled; every reconnect rejoins them from it. A publication
//!   at or below the position in the same epoch (a redelivery) is dropped, so each is emitted once, in
//!   order. The position moves to the op 24 reply's only when nothing is replayed (a first join, or
//!   `recovered: false`, when the app must sync the gap itself: the `recovery` event says so).
//! - Unknown ops from 22 to 999 (26-29 are reserved for room-history recovery) are ignored.

import { Backoff, type BackoffOptions } from "./backoff.js";
import { type CloseInfo, classifyClose } from "./close_reason.js";
import { Emitter } from "./emitter.js";
import { CommandError, ConnectionClosedError, ImcloudError, NotConnectedError, RoomError, TimeoutError } from "./errors.js";
import { type Frame, bodyText, decodeFrame, decodePublication, encodeFrame, splitBatch } from "./frame.js";
import * as op from "./ops.js";

/** The part of the WHATWG `WebSocket` this connection uses (browsers, Node 22+, or the `ws` package). */
export interface WebSocketLike {
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Who is connecting: goim's auth body without the room and the filter (those are options). */
export interface Credentials {
  mid: number;
  /** A login token (`POST /v1/sessions`) or a backend token (`POST /v1/tokens`). */
  token: string;
  /** Device type, used in login connection keys (`web` when empty). */
  platform?: string;
  /** Connection key; ignored by the server with a login token. */
  key?: string;
}

export interface ConnectionOptions {
  /** Websocket URL(s) of comets (`ws://host:3102/sub`), tried in turn after failures; or a function giving them. */
  url: string | readonly string[] | (() => string | readonly string[] | Promise<string | readonly string[]>);
  /** The credentials, asked for before every attempt (so a refreshed token is picked up). */
  auth: Credentials | (() => Credentials | Promise<Credentials>);
  /** The auth room (goim's `room_id`), e.g. `live://1000`. */
  room?: string;
  /** Extra rooms to be in (ops 18/20), kept across reconnects. */
  rooms?: readonly string[];
  /** Rooms to join with recovery (op 23), kept across reconnects, each rejoined from its last position. */
  recoverRooms?: readonly string[];
  /** Only these pushed ops are delivered; empty or missing means all. */
  accepts?: readonly number[];
  /** A WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Heartbeat interval; default 30 s (the server's `heartbeat`, `GET /goim/nodes/weighted`). */
  heartbeatMs?: number;
  /** How long a heartbeat may go unanswered before the connection counts as dead; default min(10 s, heartbeatMs). */
  heartbeatTimeoutMs?: number;
  /** Time for the websocket upgrade plus the auth reply; default 10 s. */
  connectTimeoutMs?: number;
  /** Default timeout of a request (op 4 command, room or filter op); default 10 s. */
  requestTimeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  /** Reconnect as soon as the browser says it is back online (default true where `addEventListener` exists). */
  watchNetwork?: boolean;
  /** Random source for jitter (tests). */
  random?: () => number;
}

export type ConnectionState =
  /** Not started, or stopped by `stop()` or a fatal close. */
  | "idle"
  | "connecting"
  | "open"
  /** Waiting to reconnect. */
  | "waiting";

/** The drain reconnect hint (op 22). */
export interface ReconnectHint {
  reason: string;
  delay_ms: number;
  url: string | null;
}

export interface RoomsReply {
  rooms: string[];
  auth_room: string | null;
}

/** A room's place in its history: the last publication handled. */
export interface RoomPosition {
  epoch: number;
  offset: number;
}

/** The answer to a join with recovery (op 24). */
export interface RecoveryReply {
  room: string;
  epoch: number;
  offset: number;
  /** False: the missed messages cannot be replayed (see `reason`); sync them from the application. */
  recovered: boolean;
  /** `epoch_changed`, `history_gap`, `too_large`, `ahead`, `buffer_full`, `unavailable`, or null. */
  reason: string | null;
  /** How many replayed publications follow. */
  publications: number;
}

/** A persistent room message (op 25), emitted once per position. */
export interface PublicationEvent {
  room: string;
  epoch: number;
  offset: number;
  op: number;
  body: Uint8Array;
}

export interface ConnectionEvents {
  state: ConnectionState;
  /** Authenticated (op 8). `reconnected` is false for the first open after `start()`. */
  open: { url: string; reconnected: boolean };
  /** The socket closed. `retryInMs` is null when the connection stopped (fatal, or `stop()`). */
  close: { info: CloseInfo; retryInMs: number | null };
  /** An application frame (op >= 1000), one per inner frame of a batch. */
  push: Frame;
  /** A heartbeat reply: the online count of the auth room. */
  heartbeat: { online: number };
  hint: ReconnectHint;
  /** A persistent message of a room joined with recovery, replayed or live, in order, once. */
  publication: PublicationEvent;
  /** The answer to each join with recovery, including the ones every reconnect makes. */
  recovery: RecoveryReply;
}

interface Pending {
  replyOp: number;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const MAX_SEQ = 0x7fffffff;

export class Connection extends Emitter<ConnectionEvents> {
  private readonly opts: ConnectionOptions;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private ws: WebSocketLike | null = null;
  private currentUrl = "";
  private urlIndex = 0;
  private seq = 0;
  private authSeq = -1;
  private serverReason: string | null = null;
  private hint: ReconnectHint | null = null;
  private hintUrl: string | null = null;
  private opened = false;
  private everOpened = false;
  private running = false;
  private pending = new Map<number, Pending>();
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private beatTimer: ReturnType<typeof setInterval> | null = null;
  private deadTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly extraRooms: Set<string>;
  /** Rooms joined with recovery, and their positions (null: none yet). */
  private readonly positions = new Map<string, RoomPosition | null>();
  private authRoom: string | null;
  /** Filter: `only` set when in "only these" mode, else the `unsubscribed` set of the "all but" mode. */
  private only: Set<number> | null;
  private readonly unsubscribed = new Set<number>();
  private networkWatch: (() => void) | null = null;
  private _state: ConnectionState = "idle";

  constructor(opts: ConnectionOptions) {
    super();
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(opts.backoff, this.random);
    this.extraRooms = new Set(opts.rooms ?? []);
    for (const r of opts.recoverRooms ?? []) this.positions.set(r, null);
    this.authRoom = opts.room ?? null;
    this.only = opts.accepts && opts.accepts.length > 0 ? new Set(opts.accepts) : null;
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Whether the connection is authenticated and usable now. */
  get isOpen(): boolean {
    return this._state === "open";
  }

  /** The URL of the current (or last) socket. */
  get url(): string {
    return this.currentUrl;
  }

  /** The rooms this connection is (or will be, after connecting) in, the auth room first. */
  get rooms(): string[] {
    return [...(this.authRoom ? [this.authRoom] : []), ...[...this.extraRooms].filter((r) => r !== this.authRoom)];
  }

  /** Starts connecting (and reconnecting). Does nothing when already running. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.everOpened = false;
    this.backoff.reset();
    this.watchNetwork();
    void this.connect();
  }

  /** Closes the connection and stops reconnecting. Pending requests are rejected. */
  stop(reason = "stopped by the client"): void {
    const wasRunning = this.running;
    this.running = false;
    this.unwatchNetwork();
    this.clearRetry();
    const ws = this.ws;
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, reason);
      } catch {
        // already closing
      }
      this.finish({ kind: "client", reason, fatal: false }, false);
    } else if (wasRunning) {
      this.setState("idle");
    }
  }

  /** When waiting to reconnect, tries now instead (e.g. the network is back). */
  reconnectNow(): void {
    if (this.running && this._state === "waiting") {
      this.clearRetry();
      void this.connect();
    }
  }

  /** Sends an op 4 command and resolves with its reply's `data` (rejects with `CommandError` on refusal). */
  async command<T = unknown>(body: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    const reply = await this.request(op.SEND_MSG, JSON.stringify(body), timeoutMs);
    let env: { code?: number; message?: string; data?: T; error?: { code?: string } };
    try {
      env = JSON.parse(bodyText(reply.body));
    } catch {
      throw new CommandError(-500, "the server's reply is not JSON");
    }
    if (env.code !== 0) {
      throw new CommandError(env.code ?? -500, env.message ?? "command failed", env.error?.code);
    }
    return env.data as T;
  }

  /** Joins an extra room (op 18); kept across reconnects. Resolves at once when not connected. */
  async joinRoom(room: string): Promise<RoomsReply> {
    this.extraRooms.add(room);
    if (!this.isOpen) return { rooms: this.rooms, auth_room: this.authRoom };
    return this.roomRequest(op.JOIN_ROOM, room, () => this.extraRooms.delete(room));
  }

  /** The position of a room joined with recovery (null before its first publication or reply). */
  position(room: string): RoomPosition | null {
    return this.positions.get(room) ?? null;
  }

  /**
   * Joins a room with recovery (op 23), from `from` (a position the app stored) or the one this
   * connection holds; kept across reconnects. Resolves with the op 24 answer; when not connected, at once
   * with null (the join happens on open).
   */
  async joinRoomWithRecovery(room: string, from?: RoomPosition): Promise<RecoveryReply | null> {
    this.positions.set(room, from ?? this.positions.get(room) ?? null);
    if (!this.isOpen) return null;
    return this.recoverRequest(room);
  }

  private async recoverRequest(room: string): Promise<RecoveryReply> {
    const from = this.positions.get(room) ?? null;
    const body = from ? { room, epoch: from.epoch, offset: from.offset } : { room };
    const reply = await this.request(op.RECOVER, JSON.stringify(body));
    const r = parseRecovery(reply.body);
    if (!r) throw new RoomError(-500, "the server's reply is not JSON");
    if ("error" in r) throw new RoomError(r.code, r.error);
    return r;
  }

  /** Op 24, before its promise settles: the position moves to the reply's unless a replay follows. */
  private onRecoveryReply(frame: Frame): void {
    const r = parseRecovery(frame.body);
    if (!r || "error" in r || !this.positions.has(r.room)) return;
    const held = this.positions.get(r.room) ?? null;
    const replays = r.recovered && held !== null && held.epoch === r.epoch;
    if (!replays) this.positions.set(r.room, { epoch: r.epoch, offset: r.offset });
    this.emit("recovery", r);
  }

  private onPublication(f: Frame): void {
    let p;
    try {
      p = decodePublication(f.body);
    } catch {
      return;
    }
    if (!this.positions.has(p.room)) return;
    const held = this.positions.get(p.room);
    if (held && held.epoch === p.epoch && p.offset <= held.offset) return;
    this.positions.set(p.room, { epoch: p.epoch, offset: p.offset });
    if (this.only ? !this.only.has(p.op) : this.unsubscribed.has(p.op)) return;
    this.emit("publication", { room: p.room, epoch: p.epoch, offset: p.offset, op: p.op, body: p.body });
  }

  /** Leaves a room (op 20); leaving the auth room clears it. */
  async leaveRoom(room: string): Promise<RoomsReply> {
    this.extraRooms.delete(room);
    this.positions.delete(room);
    if (this.authRoom === room) this.authRoom = null;
    if (!this.isOpen) return { rooms: this.rooms, auth_room: this.authRoom };
    return this.roomRequest(op.LEAVE_ROOM, room);
  }

  /** Changes the auth room (op 12); null leaves it. */
  async changeRoom(room: string | null): Promise<void> {
    this.authRoom = room;
    if (!this.isOpen) return;
    await this.request(op.CHANGE_ROOM, room ?? "");
  }

  /** Receives these pushed ops too (op 14). */
  async subscribeOps(ops: readonly number[]): Promise<void> {
    for (const o of ops) {
      if (this.only) this.only.add(o);
      else this.unsubscribed.delete(o);
    }
    if (this.isOpen) await this.request(op.SUB, ops.join(","));
  }

  /** Stops receiving these pushed ops (op 16). */
  async unsubscribeOps(ops: readonly number[]): Promise<void> {
    for (const o of ops) {
      if (this.only) this.only.delete(o);
      else this.unsubscribed.add(o);
    }
    if (this.isOpen) await this.request(op.UNSUB, ops.join(","));
  }

  /** Sends a frame and resolves with the reply of the same seq (op + 1). */
  request(reqOp: number, body: Uint8Array | string, timeoutMs?: number): Promise<Frame> {
    const ws = this.ws;
    if (!ws || !this.isOpen) return Promise.reject(new NotConnectedError());
    const seq = this.nextSeq();
    const ms = timeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new TimeoutError(`no reply to op ${reqOp} within ${ms} ms`));
      }, ms);
      this.pending.set(seq, { replyOp: reqOp + 1, resolve, reject, timer });
      try {
        ws.send(encodeFrame(reqOp, seq, body));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(seq);
        reject(new ConnectionClosedError(`send failed: ${String(e)}`));
      }
    });
  }

  private async roomRequest(reqOp: number, room: string, undo?: () => void): Promise<RoomsReply> {
    const reply = await this.request(reqOp, room);
    let r: { code?: number; message?: string; rooms?: string[]; auth_room?: string | null };
    try {
      r = JSON.parse(bodyText(reply.body));
    } catch {
      throw new RoomError(-500, "the server's reply is not JSON");
    }
    if (r.code !== 0) {
      undo?.();
      throw new RoomError(r.code ?? -500, r.message ?? "room operation failed");
    }
    return { rooms: r.rooms ?? [], auth_room: r.auth_room ?? null };
  }

  private nextSeq(): number {
    this.seq = this.seq >= MAX_SEQ ? 1 : this.seq + 1;
    return this.seq;
  }

  private setState(s: ConnectionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit("state", s);
  }

  private async urls(): Promise<readonly string[]> {
    const u = this.opts.url;
    const v = typeof u === "function" ? await u() : u;
    const list = typeof v === "string" ? [v] : v;
    if (list.length === 0) throw new ImcloudError("no comet websocket URL");
    return list;
  }

  private async connect(): Promise<void> {
    if (!this.running) return;
    this.setState("connecting");
    this.serverReason = null;
    this.hint = null;
    this.opened = false;
    let url: string;
    let creds: Credentials;
    try {
      const urls = await this.urls();
      url = this.hintUrl ?? urls[this.urlIndex % urls.length]!;
      this.hintUrl = null;
      creds = typeof this.opts.auth === "function" ? await this.opts.auth() : this.opts.auth;
    } catch (e) {
      this.scheduleRetry({ kind: "network", reason: `cannot connect: ${errorText(e)}`, fatal: false });
      return;
    }
    if (!this.running) return;
    const Ctor = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      this.running = false;
      this.setState("idle");
      this.emit("close", {
        info: { kind: "client", reason: "no WebSocket implementation: pass one as the WebSocket option", fatal: true },
        retryInMs: null,
      });
      return;
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (e) {
      this.scheduleRetry({ kind: "network", reason: `cannot open ${url}: ${errorText(e)}`, fatal: false });
      return;
    }
    this.ws = ws;
    this.currentUrl = url;
    ws.binaryType = "arraybuffer";
    this.connectTimer = setTimeout(() => {
      this.giveUp(ws, { kind: "auth_unavailable", reason: "connect timed out", fatal: false });
    }, this.opts.connectTimeoutMs ?? 10_000);
    ws.onopen = () => {
      const body: Record<string, unknown> = { mid: creds.mid, token: creds.token };
      if (creds.key) body.key = creds.key;
      if (creds.platform) body.platform = creds.platform;
      if (this.authRoom) body.room_id = this.authRoom;
      if (this.only) body.accepts = [...this.only];
      this.authSeq = this.nextSeq();
      try {
        ws.send(encodeFrame(op.AUTH, this.authSeq, JSON.stringify(body)));
      } catch (e) {
        this.giveUp(ws, { kind: "network", reason: `send failed: ${errorText(e)}`, fatal: false });
      }
    };
    ws.onmessage = (ev) => this.onMessage(ws, ev.data);
    ws.onerror = () => {
      // The close event follows and carries what is known.
    };
    ws.onclose = (ev) => {
      this.detach(ws);
      const text = this.serverReason ?? ev.reason ?? "";
      const info = classifyClose(text, ev.code);
      if (!text) info.reason = this.opened ? `connection lost (code ${ev.code})` : `cannot connect to ${url} (code ${ev.code})`;
      this.finish(info, true);
    };
  }

  private onMessage(ws: WebSocketLike, data: unknown): void {
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (data instanceof Uint8Array) bytes = data;
    else {
      this.giveUp(ws, { kind: "protocol", reason: "the server sent a non-binary message", fatal: false });
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (e) {
      this.giveUp(ws, { kind: "protocol", reason: `bad frame from the server: ${errorText(e)}`, fatal: false });
      return;
    }
    switch (frame.op) {
      case op.AUTH_REPLY:
        if (frame.seq === this.authSeq) this.onAuthenticated(ws);
        return;
      case op.HEARTBEAT_REPLY: {
        this.clearDead();
        const online = frame.body.length >= 4 ? new DataView(frame.body.buffer, frame.body.byteOffset, 4).getInt32(0) : 0;
        this.settle(frame);
        this.emit("heartbeat", { online });
        return;
      }
      case op.RAW: {
        let inner: Frame[];
        try {
          inner = splitBatch(frame.body);
        } catch (e) {
          this.giveUp(ws, { kind: "protocol", reason: `bad batch from the server: ${errorText(e)}`, fatal: false });
          return;
        }
        for (const f of inner) {
          if (f.op === op.PUBLICATION) this.onPublication(f);
          else if (f.op >= op.APP_MIN) this.emit("push", f);
        }
        return;
      }
      case op.DISCONNECT_REPLY:
        this.serverReason = bodyText(frame.body);
        return;
      case op.RECONNECT_HINT:
        this.onHint(frame.body);
        return;
      case op.RECOVER_REPLY:
        this.onRecoveryReply(frame);
        this.settle(frame);
        return;
      default:
        if (frame.op >= op.APP_MIN) this.emit("push", frame);
        else this.settle(frame);
    }
  }

  private onAuthenticated(ws: WebSocketLike): void {
    this.clearConnectTimer();
    this.opened = true;
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.backoff.reset();
    this.setState("open");
    for (const room of this.extraRooms) {
      if (room !== this.authRoom) this.roomRequest(op.JOIN_ROOM, room).catch(() => this.extraRooms.delete(room));
    }
    for (const room of this.positions.keys()) this.recoverRequest(room).catch(() => undefined);
    if (!this.only && this.unsubscribed.size > 0) {
      this.request(op.UNSUB, [...this.unsubscribed].join(",")).catch(() => undefined);
    }
    this.startHeartbeat(ws);
    this.emit("open", { url: this.currentUrl, reconnected });
  }

  private onHint(body: Uint8Array): void {
    try {
      const h = JSON.parse(bodyText(body)) as Partial<ReconnectHint>;
      const delay = typeof h.delay_ms === "number" && h.delay_ms >= 0 ? h.delay_ms : 0;
      const hint: ReconnectHint = {
        reason: typeof h.reason === "string" ? h.reason : "",
        delay_ms: delay,
        url: typeof h.url === "string" && h.url !== "" ? h.url : null,
      };
      this.hint = hint;
      this.emit("hint", hint);
    } catch {
      // A hint we cannot read is ignored; the close that follows is retried with backoff.
    }
  }

  private startHeartbeat(ws: WebSocketLike): void {
    const every = this.opts.heartbeatMs ?? 30_000;
    const deadAfter = this.opts.heartbeatTimeoutMs ?? Math.min(10_000, every);
    const beat = () => {
      if (this.ws !== ws) return;
      try {
        ws.send(encodeFrame(op.HEARTBEAT, this.nextSeq()));
      } catch {
        return;
      }
      if (!this.deadTimer) {
        this.deadTimer = setTimeout(() => {
          this.giveUp(ws, { kind: "client", reason: `no heartbeat reply within ${deadAfter} ms`, fatal: false });
        }, deadAfter);
      }
    };
    beat();
    this.beatTimer = setInterval(beat, every);
  }

  /** Resolves the pending request a reply answers. */
  private settle(frame: Frame): void {
    const p = this.pending.get(frame.seq);
    if (!p || p.replyOp !== frame.op) return;
    this.pending.delete(frame.seq);
    clearTimeout(p.timer);
    p.resolve(frame);
  }

  /** Abandons a socket that is dead or misbehaving: detach it, close it, and treat it as closed now. */
  private giveUp(ws: WebSocketLike, info: CloseInfo): void {
    if (this.ws !== ws) return;
    this.detach(ws);
    try {
      ws.close(4000, info.reason.slice(0, 120));
    } catch {
      // already closed
    }
    this.finish(info, true);
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    if (this.ws === ws) this.ws = null;
    this.clearConnectTimer();
    this.clearDead();
    if (this.beatTimer) clearInterval(this.beatTimer);
    this.beatTimer = null;
  }

  /** After a socket ended: settle what was pending and decide whether and when to retry. */
  private finish(info: CloseInfo, mayRetry: boolean): void {
    for (const [seq, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ConnectionClosedError(`connection closed: ${info.reason}`));
      this.pending.delete(seq);
    }
    if (!mayRetry || !this.running || info.fatal) {
      this.running = false;
      this.unwatchNetwork();
      this.setState("idle");
      this.emit("close", { info, retryInMs: null });
      return;
    }
    this.scheduleRetry(info);
  }

  private scheduleRetry(info: CloseInfo): void {
    let delay: number;
    const hint = this.hint;
    this.hint = null;
    if (hint) {
      // A drain is not a failure: no backoff step, the hinted comet once, and jitter to spread the herd.
      this.backoff.reset();
      this.hintUrl = hint.url;
      delay = hint.delay_ms + Math.round(this.random() * Math.max(1000, hint.delay_ms));
    } else {
      if (!this.opened) this.urlIndex += 1;
      delay = this.backoff.next();
    }
    this.setState("waiting");
    this.emit("close", { info, retryInMs: delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private clearConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private clearDead(): void {
    if (this.deadTimer) clearTimeout(this.deadTimer);
    this.deadTimer = null;
  }

  private watchNetwork(): void {
    const g = globalThis as { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
    if (this.opts.watchNetwork === false || typeof g.addEventListener !== "function" || this.networkWatch) return;
    const online = () => this.reconnectNow();
    g.addEventListener("online", online);
    this.networkWatch = () => g.removeEventListener?.("online", online);
  }

  private unwatchNetwork(): void {
    this.networkWatch?.();
    this.networkWatch = null;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An op 24 body, or its refusal. */
function parseRecovery(body: Uint8Array): RecoveryReply | { code: number; error: string } | null {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(bodyText(body));
  } catch {
    return null;
  }
  // -503: in the room, live, but the history could not be read: a recovery that failed, not a refusal.
  if (r.code !== 0 && r.code !== -503) {
    return { code: typeof r.code === "number" ? r.code : -500, error: String(r.message ?? "recovery refused") };
  }
  return {
    room: String(r.room ?? ""),
    epoch: Number(r.epoch ?? 0),
    offset: Number(r.offset ?? 0),
    recovered: r.recovered === true,
    reason: typeof r.reason === "string" ? r.reason : null,
    publications: Number(r.publications ?? 0),
  };
}
