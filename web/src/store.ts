//! The client's state and every action a person can take, wired to the SDK's `ImClient`. Components
//! read `store.state` and call the actions; every change ends in `changed()`, which re-renders.
//!
//! Invariants:
//! - A chat log holds each message once, keyed by seq (the SDK delivers live and synced messages once
//!   and in order; history pages merge by seq).
//! - Every action that calls the server goes through `run()`, so a refusal is shown to the person in the
//!   server's words (a toast), never as a blank screen or an uncaught error.
//! - Unread counts come from the server at each sync and are kept current by live events; opening a
//!   visible chat marks it read up to its newest message.

import {
  ApiError,
  type Conversation,
  type FriendGroupWithFriends,
  type FriendRequest,
  type Group,
  type GroupEvent,
  ImClient,
  type JoinRequest,
  type Member,
  type Message,
  type Notification,
  type PublicUser,
  type User,
  newClientMsgId,
} from "@imcloud/client";

export type Tab = "friends" | "groups" | "chats";

export type Dialog =
  | null
  | { kind: "box" }
  | { kind: "find" }
  | { kind: "create" }
  | { kind: "profile" }
  | { kind: "manage"; groupId: number };

export interface PendingMessage {
  clientMsgId: string;
  type: "text" | "image";
  content: string;
  state: "sending" | "failed";
  error?: string;
  /** An image not yet uploaded: its file and a local preview URL. */
  file?: Blob;
  preview?: string;
}

export interface ChatLog {
  bySeq: Map<number, Message>;
  pending: PendingMessage[];
  /** Older messages exist before the oldest held. */
  hasMoreOlder: boolean;
  loadedNewest: boolean;
  loadingOlder: boolean;
  /** The peer of a private chat has read up to here (from live read receipts). */
  peerReadSeq: number;
}

export interface Toast {
  id: number;
  kind: "error" | "info";
  text: string;
}

export interface State {
  phase: "starting" | "signed_out" | "ready";
  signedOutReason: string | null;
  me: User | null;
  conn: "idle" | "connecting" | "open" | "waiting";
  friendGroups: FriendGroupWithFriends[];
  collapsed: Set<number>;
  groups: Group[];
  conversations: Conversation[];
  logs: Map<string, ChatLog>;
  box: { items: Notification[]; unread: number };
  incoming: FriendRequest[];
  joinRequests: Map<number, JoinRequest[]>;
  members: Map<number, Member[]>;
  /** My own `muted_until` per group (unix ms). */
  myMute: Map<number, number>;
  /** Groups I was removed from, with the reason shown in their chat window. */
  removed: Map<number, string>;
  users: Map<number, PublicUser>;
  /** Names of groups seen, kept after leaving one (its window still has a title). */
  groupNames: Map<number, string>;
  active: string | null;
  tab: Tab;
  dialog: Dialog;
  toasts: Toast[];
}

const TOKEN_KEY = "imcloud.token";

function freshState(): State {
  return {
    phase: "starting",
    signedOutReason: null,
    me: null,
    conn: "idle",
    friendGroups: [],
    collapsed: new Set(),
    groups: [],
    conversations: [],
    logs: new Map(),
    box: { items: [], unread: 0 },
    incoming: [],
    joinRequests: new Map(),
    members: new Map(),
    myMute: new Map(),
    removed: new Map(),
    users: new Map(),
    groupNames: new Map(),
    active: null,
    tab: "friends",
    dialog: null,
    toasts: [],
  };
}

function emptyLog(): ChatLog {
  return { bySeq: new Map(), pending: [], hasMoreOlder: true, loadedNewest: false, loadingOlder: false, peerReadSeq: 0 };
}

/** The private conversation id of two users. */
export function privateCid(a: number, b: number): string {
  return `u-${Math.min(a, b)}-${Math.max(a, b)}`;
}

export class Store {
  readonly client: ImClient;
  state: State = freshState();

  private listeners = new Set<() => void>();
  private toastId = 0;

  constructor(apiBase = "") {
    this.client = new ImClient({ apiBase, platform: "web", backoff: { baseMs: 1000, maxMs: 30_000 } });
    this.wire();
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible" && this.state.active) this.markRead(this.state.active);
      });
    }
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(): void {
    for (const fn of this.listeners) fn();
  }

  get api() {
    return this.client.api;
  }

  // Feedback

  toast(text: string, kind: Toast["kind"] = "info"): void {
    const id = ++this.toastId;
    this.state.toasts = [...this.state.toasts, { id, kind, text }];
    this.changed();
    setTimeout(() => this.dismissToast(id), kind === "error" ? 8000 : 4000);
  }

  dismissToast(id: number): void {
    this.state.toasts = this.state.toasts.filter((t) => t.id !== id);
    this.changed();
  }

  /** Runs an action; a failure becomes a toast in the server's words. Resolves to undefined on failure. */
  async run<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.toast(`Could not ${what}: ${describe(e)}`, "error");
      return undefined;
    }
  }

  // Account

  async start(): Promise<void> {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) {
      this.state.phase = "signed_out";
      this.changed();
      return;
    }
    try {
      this.state.me = await this.client.resume(token);
    } catch (e) {
      localStorage.removeItem(TOKEN_KEY);
      this.state.phase = "signed_out";
      this.state.signedOutReason = e instanceof ApiError && e.status === 401 ? "Your login has ended. Please log in again." : describe(e);
      this.changed();
      return;
    }
    await this.afterLogin();
  }

  async register(email: string, nickname: string, password: string): Promise<boolean> {
    const user = await this.run("register", () => this.api.register({ email, nickname, password }));
    if (!user) return false;
    return this.login(email, password);
  }

  async login(email: string, password: string): Promise<boolean> {
    const me = await this.run("log in", () => this.client.login(email, password));
    if (!me) return false;
    this.state.me = me;
    if (this.client.token) localStorage.setItem(TOKEN_KEY, this.client.token);
    await this.afterLogin();
    return true;
  }

  async logout(): Promise<void> {
    await this.run("log out", () => this.client.logout());
    this.signedOut(null);
  }

  private signedOut(reason: string | null): void {
    localStorage.removeItem(TOKEN_KEY);
    this.client.disconnect();
    // A fresh start: nothing of the old session stays in memory or on screen.
    this.state = { ...freshState(), phase: "signed_out", signedOutReason: reason, toasts: this.state.toasts };
    this.changed();
  }

  private async afterLogin(): Promise<void> {
    this.state.phase = "ready";
    this.state.signedOutReason = null;
    this.changed();
    await Promise.all([this.refreshFriends(), this.refreshGroups(), this.refreshBox(), this.refreshIncoming()]);
    await this.run("connect", () => this.client.connect());
  }

  async updateProfile(patch: Parameters<ImClient["api"]["updateMe"]>[0]): Promise<boolean> {
    const me = await this.run("save the profile", () => this.api.updateMe(patch));
    if (!me) return false;
    this.state.me = me;
    this.toast("Profile saved");
    this.changed();
    return true;
  }

  /** Uploads a file; resolves to its URL. */
  async upload(file: Blob): Promise<string | undefined> {
    const up = await this.run("upload the file", () => this.api.upload(file, file.type || "application/octet-stream"));
    return up?.url;
  }

  // Lists

  async refreshFriends(): Promise<void> {
    const r = await this.run("load friends", () => this.api.friends());
    if (!r) return;
    this.state.friendGroups = r.groups;
    for (const g of r.groups) for (const f of g.friends) this.state.users.set(f.user.id, f.user);
    this.changed();
  }

  async refreshGroups(): Promise<void> {
    const r = await this.run("load groups", () => this.api.myGroups());
    if (!r) return;
    this.state.groups = r.groups;
    for (const g of r.groups) this.state.groupNames.set(g.id, g.name);
    this.changed();
  }

  async refreshConversations(): Promise<void> {
    const r = await this.run("load conversations", () => this.api.conversations());
    if (r) this.setConversations(r.conversations);
  }

  async refreshBox(): Promise<void> {
    const r = await this.run("load the message box", () => this.api.notifications({ page_size: 50 }));
    if (!r) return;
    this.state.box = { items: r.items, unread: r.unread };
    this.changed();
  }

  async refreshIncoming(): Promise<void> {
    const r = await this.run("load friend requests", () => this.api.friendRequests());
    if (!r) return;
    this.state.incoming = r.incoming;
    this.changed();
  }

  async refreshJoinRequests(groupId: number): Promise<void> {
    const r = await this.run("load join requests", () => this.api.joinRequests(groupId));
    if (!r) return;
    this.state.joinRequests.set(groupId, r.requests);
    this.changed();
  }

  async refreshMembers(groupId: number): Promise<void> {
    const r = await this.run("load the members", () => this.api.members(groupId));
    if (!r) return;
    this.state.members.set(groupId, r.members);
    for (const m of r.members) {
      this.state.users.set(m.user.id, m.user);
      if (m.user.id === this.state.me?.id) this.state.myMute.set(groupId, m.muted_until);
    }
    this.changed();
  }

  setTab(tab: Tab): void {
    this.state.tab = tab;
    this.changed();
  }

  toggleFriendGroup(id: number): void {
    const c = this.state.collapsed;
    if (c.has(id)) c.delete(id);
    else c.add(id);
    this.changed();
  }

  openDialog(d: Dialog): void {
    this.state.dialog = d;
    this.changed();
    if (d?.kind === "box") void this.openBox();
    if (d?.kind === "manage") {
      void this.refreshMembers(d.groupId);
      const g = this.group(d.groupId);
      if (g && (g.my_role === "owner" || g.my_role === "admin")) void this.refreshJoinRequests(d.groupId);
    }
  }

  closeDialog(): void {
    this.state.dialog = null;
    this.changed();
  }

  private async openBox(): Promise<void> {
    await Promise.all([this.refreshBox(), this.refreshIncoming(), ...this.managedGroups().map((g) => this.refreshJoinRequests(g.id))]);
    if (this.state.box.unread > 0) {
      const r = await this.run("mark the message box read", () => this.api.readNotifications());
      if (r) {
        this.state.box = { items: this.state.box.items.map((i) => ({ ...i, read: true })), unread: r.unread };
        this.changed();
      }
    }
  }

  managedGroups(): Group[] {
    return this.state.groups.filter((g) => g.my_role === "owner" || g.my_role === "admin");
  }

  group(id: number): Group | undefined {
    return this.state.groups.find((g) => g.id === id);
  }

  friendOf(userId: number): { user: PublicUser; remark: string; online: boolean } | undefined {
    for (const g of this.state.friendGroups) {
      const f = g.friends.find((x) => x.user.id === userId);
      if (f) return f;
    }
    return undefined;
  }

  /** A user's name as I see it: my remark, else their nickname. */
  nameOf(userId: number): string {
    if (userId === this.state.me?.id) return this.state.me.nickname;
    const f = this.friendOf(userId);
    if (f) return f.remark || f.user.nickname;
    return this.state.users.get(userId)?.nickname ?? `user ${userId}`;
  }

  conversation(cid: string): Conversation | undefined {
    return this.state.conversations.find((c) => c.id === cid);
  }

  /** Title of a conversation, also before it has any message. */
  title(cid: string): string {
    if (cid.startsWith("g-")) {
      const id = Number(cid.slice(2));
      return this.group(id)?.name ?? this.conversation(cid)?.group?.name ?? this.state.groupNames.get(id) ?? `group ${id}`;
    }
    return this.nameOf(this.peerOf(cid));
  }

  peerOf(cid: string): number {
    const [, a, b] = cid.split("-");
    const me = this.state.me?.id;
    return Number(a) === me ? Number(b) : Number(a);
  }

  log(cid: string): ChatLog {
    let l = this.state.logs.get(cid);
    if (!l) {
      l = emptyLog();
      this.state.logs.set(cid, l);
    }
    return l;
  }

  // Chat

  async openChat(cid: string): Promise<void> {
    this.state.active = cid;
    this.state.dialog = null;
    this.changed();
    const log = this.log(cid);
    if (cid.startsWith("g-") && !this.state.removed.has(Number(cid.slice(2)))) void this.refreshMembers(Number(cid.slice(2)));
    if (!log.loadedNewest) {
      const page = await this.run("load the history", () => this.client.history(cid, undefined, 30));
      if (page) {
        for (const m of page.messages) log.bySeq.set(m.seq, m);
        log.hasMoreOlder = page.has_more;
        log.loadedNewest = true;
        this.changed();
      }
    }
    this.markRead(cid);
  }

  closeChat(): void {
    this.state.active = null;
    this.changed();
  }

  async loadOlder(cid: string): Promise<void> {
    const log = this.log(cid);
    if (log.loadingOlder || !log.hasMoreOlder) return;
    const oldest = Math.min(...log.bySeq.keys());
    if (!Number.isFinite(oldest)) return;
    log.loadingOlder = true;
    this.changed();
    const page = await this.run("load older messages", () => this.client.history(cid, oldest, 30));
    log.loadingOlder = false;
    if (page) {
      for (const m of page.messages) log.bySeq.set(m.seq, m);
      log.hasMoreOlder = page.has_more;
    }
    this.changed();
  }

  /** Marks the active, visible chat read up to its newest message. */
  markRead(cid: string): void {
    if (this.state.active !== cid || (typeof document !== "undefined" && document.visibilityState !== "visible")) return;
    const c = this.conversation(cid);
    const newest = Math.max(c?.last_seq ?? 0, ...this.log(cid).bySeq.keys());
    if (!c || newest <= c.read_seq) return;
    c.read_seq = newest;
    c.unread = 0;
    this.changed();
    void this.run("mark the chat read", () => this.client.markRead(cid, newest));
  }

  sendText(cid: string, text: string): void {
    const content = text.trim();
    if (!content) return;
    const p: PendingMessage = { clientMsgId: newClientMsgId(), type: "text", content, state: "sending" };
    this.log(cid).pending.push(p);
    this.changed();
    void this.deliver(cid, p);
  }

  sendImage(cid: string, file: File): void {
    const p: PendingMessage = {
      clientMsgId: newClientMsgId(),
      type: "image",
      content: "",
      state: "sending",
      file,
      preview: URL.createObjectURL(file),
    };
    this.log(cid).pending.push(p);
    this.changed();
    void this.deliver(cid, p);
  }

  retry(cid: string, clientMsgId: string): void {
    const p = this.log(cid).pending.find((x) => x.clientMsgId === clientMsgId);
    if (!p || p.state !== "failed") return;
    p.state = "sending";
    p.error = undefined;
    this.changed();
    void this.deliver(cid, p);
  }

  private async deliver(cid: string, p: PendingMessage): Promise<void> {
    const log = this.log(cid);
    try {
      if (p.type === "image" && !p.content && p.file) {
        const up = await this.api.upload(p.file, p.file.type || "application/octet-stream");
        p.content = up.url;
      }
      const m = await this.client.send(cid, p.content, { type: p.type, clientMsgId: p.clientMsgId });
      log.bySeq.set(m.seq, m);
      log.pending = log.pending.filter((x) => x !== p);
      if (p.preview) URL.revokeObjectURL(p.preview);
    } catch (e) {
      p.state = "failed";
      p.error = describe(e);
    }
    this.changed();
  }

  // Friends

  async sendFriendRequest(toUserId: number, note: string, friendGroupId?: number): Promise<boolean> {
    const r = await this.run("send the friend request", () =>
      this.api.sendFriendRequest({ to_user_id: toUserId, note, friend_group_id: friendGroupId }),
    );
    if (r) this.toast("Friend request sent");
    return !!r;
  }

  async acceptFriend(requestId: number, friendGroupId?: number): Promise<void> {
    const r = await this.run("accept the friend request", () =>
      this.api.acceptFriendRequest(requestId, friendGroupId ? { friend_group_id: friendGroupId } : {}),
    );
    if (r) await Promise.all([this.refreshIncoming(), this.refreshFriends()]);
  }

  async refuseFriend(requestId: number): Promise<void> {
    const r = await this.run("refuse the friend request", () => this.api.refuseFriendRequest(requestId));
    if (r) await this.refreshIncoming();
  }

  // Groups

  async createGroup(body: Parameters<ImClient["api"]["createGroup"]>[0]): Promise<boolean> {
    const g = await this.run("create the group", () => this.api.createGroup(body));
    if (!g) return false;
    await this.refreshGroups();
    this.toast(`Group "${g.name}" created (number ${g.group_no})`);
    return true;
  }

  async joinGroup(id: number, note: string): Promise<boolean> {
    const r = await this.run("join the group", () => this.api.joinGroup(id, { note }));
    if (!r) return false;
    if (r.status === "joined") {
      await this.refreshGroups();
      this.toast("Joined the group");
    } else {
      this.toast("Join request sent: the group's admins will decide");
    }
    return true;
  }

  async handleJoin(groupId: number, requestId: number, accept: boolean): Promise<void> {
    const r = await this.run(accept ? "approve the request" : "refuse the request", () =>
      accept ? this.api.acceptJoinRequest(groupId, requestId) : this.api.refuseJoinRequest(groupId, requestId),
    );
    if (r) await Promise.all([this.refreshJoinRequests(groupId), this.refreshMembers(groupId)]);
  }

  async setRole(groupId: number, userId: number, role: "admin" | "member"): Promise<void> {
    await this.run("change the role", () => this.api.updateMember(groupId, userId, { role }));
    await this.refreshMembers(groupId);
  }

  async mute(groupId: number, userId: number, until: number): Promise<void> {
    await this.run(until ? "mute the member" : "unmute the member", () => this.api.updateMember(groupId, userId, { muted_until: until }));
    await this.refreshMembers(groupId);
  }

  async kick(groupId: number, userId: number): Promise<void> {
    await this.run("remove the member", () => this.api.removeMember(groupId, userId));
    await this.refreshMembers(groupId);
  }

  async updateGroup(groupId: number, patch: Parameters<ImClient["api"]["updateGroup"]>[1]): Promise<void> {
    const g = await this.run("update the group", () => this.api.updateGroup(groupId, patch));
    if (g) await this.refreshGroups();
  }

  async transfer(groupId: number, userId: number): Promise<void> {
    const g = await this.run("transfer the group", () => this.api.transferGroup(groupId, userId));
    if (g) await Promise.all([this.refreshGroups(), this.refreshMembers(groupId)]);
  }

  async dismiss(groupId: number): Promise<void> {
    const r = await this.run("dismiss the group", () => this.api.dismissGroup(groupId));
    if (r) {
      this.closeDialog();
      await this.refreshGroups();
    }
  }

  async leave(groupId: number): Promise<void> {
    const me = this.state.me;
    if (!me) return;
    const r = await this.run("leave the group", () => this.api.removeMember(groupId, me.id));
    if (r) {
      this.closeDialog();
      await this.refreshGroups();
    }
  }

  // Live events

  private setConversations(list: Conversation[]): void {
    this.state.conversations = [...list].sort((a, b) => b.updated_at - a.updated_at);
    for (const c of list) if (c.peer) this.state.users.set(c.peer.id, c.peer);
    if (this.state.active) this.markRead(this.state.active);
    this.changed();
  }

  private wire(): void {
    const c = this.client;
    c.on("connection", ({ state }) => {
      this.state.conn = state;
      this.changed();
    });
    c.on("kicked", (info) => {
      const why =
        info.kind === "replaced_by_device"
          ? "You logged in on another device."
          : info.kind === "token_expired" || info.kind === "logged_out"
            ? "Your login has ended. Please log in again."
            : `The server closed the connection: ${info.reason}`;
      this.signedOut(why);
    });
    c.on("conversations", (list) => this.setConversations(list));
    c.on("message", ({ message }) => this.onMessage(message));
    c.on("read", (r) => {
      const me = this.state.me?.id;
      const conv = this.conversation(r.conversation_id);
      if (r.user_id === me) {
        if (conv && r.seq > conv.read_seq) {
          conv.read_seq = r.seq;
          conv.unread = Math.max(0, conv.last_seq - r.seq);
        }
      } else {
        const log = this.log(r.conversation_id);
        log.peerReadSeq = Math.max(log.peerReadSeq, r.seq);
      }
      this.changed();
    });
    c.on("presence", ({ user_id, online }) => {
      for (const g of this.state.friendGroups) for (const f of g.friends) if (f.user.id === user_id) f.online = online;
      for (const conv of this.state.conversations) if (conv.peer?.id === user_id) conv.peer.online = online;
      for (const list of this.state.members.values()) for (const m of list) if (m.user.id === user_id) m.online = online;
      this.changed();
    });
    c.on("friend", () => {
      void this.refreshFriends();
      void this.refreshIncoming();
    });
    c.on("notification", (n) => {
      this.state.box.items = [n, ...this.state.box.items.filter((i) => i.id !== n.id)];
      if (this.state.dialog?.kind === "box") void this.run("mark the message box read", () => this.api.readNotifications([n.id]));
      else this.state.box.unread += 1;
      if (n.kind === "friend_request" || n.kind === "friend_request_result") void this.refreshIncoming();
      if (n.kind === "group_join_request") {
        const gid = (n.payload as { group_id?: number }).group_id;
        if (gid) void this.refreshJoinRequests(gid);
      }
      this.changed();
    });
    c.on("group", (ev) => this.onGroupEvent(ev));
    c.on("error", ({ where, error }) => {
      // Background sync failures are retried at the next reconnect; tell the person once.
      this.toast(`Sync problem (${where}): ${describe(error)}`, "error");
    });
  }

  private onMessage(m: Message): void {
    const log = this.log(m.conversation_id);
    if (log.bySeq.has(m.seq)) return;
    log.bySeq.set(m.seq, m);
    const me = this.state.me?.id;
    if (isChange(m)) {
      // An edit, recall or reaction: applied to the message it names, never a bubble or unread of its own.
      const target = m.ref_seq != null ? log.bySeq.get(m.ref_seq) : undefined;
      if (target) applyChange(target, m, me);
      const conv = this.conversation(m.conversation_id);
      if (conv?.last_message && conv.last_message.seq === m.ref_seq && target) conv.last_message = target;
      this.changed();
      return;
    }
    if (m.sender_id === me) log.pending = log.pending.filter((p) => p.clientMsgId !== m.client_msg_id);
    const conv = this.conversation(m.conversation_id);
    if (!conv) {
      void this.refreshConversations();
      return;
    }
    if (m.seq > conv.last_seq) {
      conv.last_seq = m.seq;
      conv.last_message = m;
      conv.updated_at = m.created_at;
      if (m.sender_id === me) conv.read_seq = Math.max(conv.read_seq, m.seq);
      conv.unread = Math.max(0, conv.last_seq - conv.read_seq);
    }
    this.state.conversations.sort((a, b) => b.updated_at - a.updated_at);
    this.markRead(m.conversation_id);
    this.changed();
  }

  private onGroupEvent(ev: GroupEvent): void {
    const me = this.state.me?.id;
    const gid = ev.group_id;
    switch (ev.change) {
      case "joined":
        if (ev.user_id === me) {
          this.state.removed.delete(gid);
          void this.refreshGroups();
          void this.refreshConversations();
        }
        break;
      case "kicked":
      case "left":
        if (ev.user_id === me) {
          this.state.removed.set(gid, ev.change === "kicked" ? "You were removed from this group." : "You left this group.");
          this.state.groups = this.state.groups.filter((g) => g.id !== gid);
          this.state.conversations = this.state.conversations.filter((c) => c.id !== `g-${gid}`);
        }
        break;
      case "dismissed":
        this.state.removed.set(gid, "This group was dismissed.");
        this.state.groups = this.state.groups.filter((g) => g.id !== gid);
        this.state.conversations = this.state.conversations.filter((c) => c.id !== `g-${gid}`);
        break;
      case "muted":
        if (ev.user_id === me) this.state.myMute.set(gid, ev.muted_until);
        break;
      case "updated": {
        const i = this.state.groups.findIndex((g) => g.id === gid);
        const old = this.state.groups[i];
        if (old) this.state.groups[i] = { ...ev.group, my_role: old.my_role, member_count: ev.group.member_count };
        break;
      }
      case "role":
      case "owner":
        void this.refreshGroups();
        break;
    }
    if (this.state.members.has(gid) && !this.state.removed.has(gid)) void this.refreshMembers(gid);
    this.changed();
  }
}

/** An error in words for a person. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return "the server cannot be reached. Check the connection and try again.";
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

/** Whether a message is a change to an earlier one (kept in the seq stream, shown on the message it names). */
export function isChange(m: Message): boolean {
  return m.type === "edit" || m.type === "recall" || m.type === "react" || m.type === "unreact";
}

/** Applies a change (`edit`, `recall`, `react`, `unreact`) to the message it names, in place. */
export function applyChange(target: Message, change: Message, me: number | undefined): void {
  switch (change.type) {
    case "edit":
      target.content = change.content;
      target.edited_at = change.created_at;
      break;
    case "recall":
      target.recalled = true;
      target.content = "";
      break;
    case "react":
    case "unreact": {
      const mine = change.sender_id === me;
      const reactions = [...(target.reactions ?? [])];
      const i = reactions.findIndex((r) => r.emoji === change.content);
      const delta = change.type === "react" ? 1 : -1;
      const old = reactions[i] ?? { emoji: change.content, count: 0, me: false };
      const next = { emoji: old.emoji, count: old.count + delta, me: mine ? delta > 0 : old.me };
      if (i >= 0) reactions.splice(i, 1);
      if (next.count > 0) reactions.splice(i >= 0 ? i : reactions.length, 0, next);
      target.reactions = reactions;
      break;
    }
    default:
      break;
  }
}
