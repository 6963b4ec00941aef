//! `ImClient`: what an IM app holds. It logs in through the JSON API, opens one reconnecting websocket
//! with the login token, and after every (re)connect syncs each conversation from its last seen seq
//! before merging the live events, so the app's `message` events carry each message exactly once, in
//! seq order (sync.ts). Sends and read marks go over the websocket (op 4) when it is open, and over
//! HTTP otherwise or when the websocket fails mid-way; a send keeps one `client_msg_id` across both, so
//! a retried send is never stored twice.
//!
//! Invariants: the connection is opened before the sync reads the store (docs/im.md, "Catching up"), so
//! nothing falls between them; a fatal close (logged out, replaced, token expired) stops reconnecting and
//! is reported once as `kicked`; background failures are reported as `error` events, never thrown.

import { ImApi, type FetchLike } from "./api.js";
import type { BackoffOptions } from "./backoff.js";
import type { CloseInfo } from "./close_reason.js";
import { Connection, type ConnectionState, type WebSocketConstructor } from "./connection.js";
import { type CometDirectory, discoverComets } from "./discovery.js";
import { Emitter } from "./emitter.js";
import { ApiError, CommandError, ConnectionClosedError, ImcloudError, NotConnectedError, TimeoutError } from "./errors.js";
import { type FriendEvent, type GroupEvent, type PresenceEvent, type ReadEvent, parseEvent } from "./events.js";
import { MAX_CLIENT_BODY } from "./frame.js";
import { MessageSync } from "./sync.js";
import type { Conversation, Message, Notification, ReadReply, User } from "./types.js";

export interface ImClientOptions {
  /** The api's base URL (`http://127.0.0.1:3111`), or `""` for the page's own origin. */
  apiBase: string;
  /** Comet websocket URLs; default: discovered from the api (`GET /goim/nodes/weighted`). */
  wsUrls?: readonly string[];
  /** A WebSocket implementation; default `globalThis.WebSocket` (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  /** Device type for the connection key; default `web`. */
  platform?: string;
  /** Heartbeat interval; default: the server's. */
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  /** Newest messages of each conversation delivered by the first sync (default 0: only what is new). */
  backfill?: number;
  /** Timeout of op 4 commands before the HTTP fallback; default 10 s. */
  commandTimeoutMs?: number;
}

export interface ImClientEvents {
  /** A message, exactly once per message and in seq order within its conversation. */
  message: { message: Message; live: boolean };
  read: ReadEvent;
  notification: Notification;
  presence: PresenceEvent;
  group: GroupEvent;
  friend: FriendEvent;
  /** The conversation list each sync read (unread counts, last messages). */
  conversations: Conversation[];
  /** A sync after a (re)connect finished. */
  synced: { conversations: Conversation[] };
  connection: { state: ConnectionState; info?: CloseInfo; retryInMs?: number | null };
  /** The server ended this connection for good: logged out, replaced by another device, token refused. */
  kicked: CloseInfo;
  /** A background step failed (it is retried where that makes sense). */
  error: { where: string; error: unknown };
}

export interface SendOptions {
  type?: "text" | "image" | "file";
  /** The idempotency key; generated when omitted. Reuse it to retry a send that failed. */
  clientMsgId?: string;
}

/** Largest op 4 body sent over the websocket; longer sends go over HTTP. */
const MAX_COMMAND_BYTES = MAX_CLIENT_BODY - 256;

export class ImClient extends Emitter<ImClientEvents> {
  readonly api: ImApi;
  private readonly opts: ImClientOptions;
  private sync: MessageSync<Message>;
  private conn: Connection | null = null;
  private me: User | null = null;
  private directory: CometDirectory | null = null;
  private syncing: Promise<void> | null = null;
  private resyncWanted = false;

  constructor(opts: ImClientOptions) {
    super();
    this.opts = opts;
    this.api = new ImApi({ baseUrl: opts.apiBase, fetch: opts.fetch });
    this.sync = this.newSync();
  }

  private newSync(): MessageSync<Message> {
    return new MessageSync<Message>(
      { after: (cid, afterSeq, limit) => this.api.messages(cid, { after_seq: afterSeq, limit }) },
      {
        backfill: this.opts.backfill ?? 0,
        deliver: (message, live) => this.emit("message", { message, live }),
        onError: (cid, error) => this.emit("error", { where: `sync ${cid}`, error }),
      },
    );
  }

  /** Another user than before: what was synced for the previous one is forgotten. */
  private setUser(user: User): void {
    if (this.me && this.me.id !== user.id) this.sync = this.newSync();
    this.me = user;
  }

  /** The logged-in user, once known. */
  get user(): User | null {
    return this.me;
  }

  get token(): string | null {
    return this.api.token;
  }

  get connectionState(): ConnectionState {
    return this.conn?.state ?? "idle";
  }

  /** The underlying connection (rooms, op filters, raw commands), once `connect()` ran. */
  get connection(): Connection | null {
    return this.conn;
  }

  /** Logs in; then call `connect()`. */
  async login(email: string, password: string): Promise<User> {
    const reply = await this.api.login({ email, password });
    this.setUser(reply.user);
    return reply.user;
  }

  /** Uses a token kept from an earlier login (checks it with `GET /v1/me`). */
  async resume(token: string): Promise<User> {
    this.api.token = token;
    let user: User;
    try {
      user = await this.api.me();
    } catch (e) {
      this.api.token = null;
      throw e;
    }
    this.setUser(user);
    return user;
  }

  /** Opens the websocket (and keeps it open); each open is followed by a sync. */
  async connect(): Promise<void> {
    if (!this.me || !this.api.token) throw new ImcloudError("log in first");
    if (this.conn) {
      this.conn.start();
      return;
    }
    if (!this.opts.wsUrls) this.directory = await discoverComets(this.opts.apiBase, this.opts.fetch as never);
    const conn = new Connection({
      url: () => this.wsUrls(),
      // Read at every attempt: the current login's user and token.
      auth: () => {
        if (!this.me || !this.api.token) throw new ImcloudError("logged out");
        return { mid: this.me.id, token: this.api.token, platform: this.opts.platform ?? "web" };
      },
      WebSocket: this.opts.WebSocket,
      heartbeatMs: this.opts.heartbeatMs ?? this.directory?.heartbeatMs,
      heartbeatTimeoutMs: this.opts.heartbeatTimeoutMs,
      backoff: this.opts.backoff,
      requestTimeoutMs: this.opts.commandTimeoutMs,
    });
    conn.on("state", (state) => this.emit("connection", { state }));
    conn.on("open", () => void this.resync());
    conn.on("close", ({ info, retryInMs }) => {
      this.emit("connection", { state: conn.state, info, retryInMs });
      if (info.fatal) this.emit("kicked", info);
    });
    conn.on("push", (frame) => {
      const ev = parseEvent(frame);
      switch (ev.kind) {
        case "message":
          this.sync.live(ev.data);
          break;
        case "read":
          this.emit("read", ev.data);
          break;
        case "notification":
          this.emit("notification", ev.data);
          break;
        case "presence":
          this.emit("presence", ev.data);
          break;
        case "friend":
          this.emit("friend", ev.data);
          break;
        case "group":
          if ((ev.data.change === "kicked" || ev.data.change === "left") && ev.data.user_id === this.me?.id) {
            this.sync.forget(`g-${ev.data.group_id}`);
          } else if (ev.data.change === "dismissed") {
            this.sync.forget(`g-${ev.data.group_id}`);
          }
          this.emit("group", ev.data);
          break;
        case "unknown":
          break;
      }
    });
    this.conn = conn;
    conn.start();
  }

  /** Closes the websocket; `connect()` reopens it. */
  disconnect(): void {
    this.conn?.stop();
  }

  /** Logs out (the server closes this login's connections) and forgets the user. */
  async logout(): Promise<void> {
    this.conn?.stop("logging out");
    this.conn = null;
    try {
      await this.api.logout();
    } finally {
      this.me = null;
      this.sync = this.newSync();
    }
  }

  /** Syncs now: the conversation list, then every conversation from its last seen seq. */
  resync(): Promise<void> {
    if (this.syncing) {
      this.resyncWanted = true;
      return this.syncing;
    }
    const run = async () => {
      do {
        this.resyncWanted = false;
        try {
          const { conversations } = await this.api.conversations();
          this.emit("conversations", conversations);
          await this.sync.sync(conversations);
          this.emit("synced", { conversations });
        } catch (error) {
          this.emit("error", { where: "sync", error });
        }
      } while (this.resyncWanted);
    };
    this.syncing = run().finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }

  /**
   * Sends a message: over the websocket when open (and the body fits a frame), else over HTTP; a
   * websocket failure mid-way is retried over HTTP with the same `client_msg_id`. Rejects with an
   * `ApiError` (the server's words) when the server refuses it.
   */
  async send(conversationId: string, content: string, opts: SendOptions = {}): Promise<Message> {
    const body = {
      conversation_id: conversationId,
      client_msg_id: opts.clientMsgId ?? newClientMsgId(),
      type: opts.type ?? "text",
      content,
    };
    const message = await this.viaSocketOrHttp(
      { cmd: "send", ...body },
      () => this.api.send(conversationId, { client_msg_id: body.client_msg_id, type: body.type, content }),
    );
    this.sync.live(message);
    return message;
  }

  /** Marks a conversation read up to `seq` (a read receipt for the peer of a private chat). */
  markRead(conversationId: string, seq: number): Promise<ReadReply> {
    return this.viaSocketOrHttp({ cmd: "read", conversation_id: conversationId, seq }, () =>
      this.api.read(conversationId, seq),
    );
  }

  /** Older messages of a conversation (before `beforeSeq`, or the newest page), ascending. */
  history(conversationId: string, beforeSeq?: number, limit = 30) {
    return this.api.messages(conversationId, { before_seq: beforeSeq, limit });
  }

  /** The highest seq delivered by `message` events for a conversation. */
  heldSeq(conversationId: string): number | undefined {
    return this.sync.held(conversationId);
  }

  private async viaSocketOrHttp<R>(command: Record<string, unknown>, http: () => Promise<R>): Promise<R> {
    const conn = this.conn;
    const size = new TextEncoder().encode(JSON.stringify(command)).length;
    if (conn?.isOpen && size <= MAX_COMMAND_BYTES) {
      try {
        return await conn.command<R>(command);
      } catch (e) {
        if (e instanceof CommandError) {
          // Logic unreachable or timed out behind the comet (no IM error code): HTTP may still work.
          if (e.errorCode === undefined && e.code === -500) return http();
          throw new ApiError(e.status, e.errorCode ?? "error", e.message);
        }
        if (e instanceof NotConnectedError || e instanceof ConnectionClosedError || e instanceof TimeoutError) {
          return http();
        }
        throw e;
      }
    }
    return http();
  }

  private async wsUrls(): Promise<readonly string[]> {
    if (this.opts.wsUrls) return this.opts.wsUrls;
    try {
      this.directory = await discoverComets(this.opts.apiBase, this.opts.fetch as never);
    } catch (e) {
      if (!this.directory) throw e;
    }
    const urls = this.directory?.urls ?? [];
    if (urls.length === 0) throw new ImcloudError("the server lists no comet");
    return urls;
  }
}

/** A random UUID (v4), also where `crypto.randomUUID` is missing (pages served over plain http). */
export function newClientMsgId(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (typeof c?.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
