//! The IM JSON API (`/v1`, docs/im.md) as typed functions over `fetch`. Invariants: each function is
//! one HTTP request to the path the OpenAPI document names for its operation (the `route()` calls are
//! typed against the generated `paths`, so a path that leaves the document breaks the build); a non-2xx
//! answer rejects with an `ApiError` carrying the server's status, code and message (a network failure:
//! status 0, code `network`); the login token is sent as `Authorization: Bearer` when set.

import { ApiError } from "./errors.js";
import type * as T from "./types.js";
import type { operations, paths } from "./generated/openapi.js";
import type { ApiPath, OperationId, RequestOf } from "./types.js";

export type FetchLike = (
  input: string,
  init: { method: string; headers: Record<string, string>; body?: string | Blob | ArrayBuffer | Uint8Array },
) => Promise<{ ok: boolean; status: number; headers: { get(name: string): string | null }; text(): Promise<string> }>;

export interface ImApiOptions {
  /** The api's base URL, e.g. `http://127.0.0.1:3111`; `""` for the page's own origin. */
  baseUrl: string;
  /** A login token (`POST /v1/sessions`). */
  token?: string | null;
  fetch?: FetchLike;
}

type Query = Record<string, string | number | undefined>;

interface Call {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: ApiPath;
  params?: Record<string, string | number>;
  query?: Query;
  body?: unknown;
  raw?: { data: Blob | ArrayBuffer | Uint8Array; contentType: string };
}

/** The operation the document has at a path and method (never when it has none). */
type OperationAt<P extends ApiPath, M extends Call["method"]> = NonNullable<paths[P][Lowercase<M> & keyof paths[P]]>;

/**
 * Ties an operation id to its method and path. It compiles only while the document has that method on
 * that path, with that operation's shape.
 */
function route<P extends ApiPath, M extends Call["method"], K extends OperationId>(
  method: M,
  path: P,
  _op: K & ([OperationAt<P, M>] extends [never] ? never : [OperationAt<P, M>] extends [operations[K]] ? unknown : never),
): Pick<Call, "method" | "path"> {
  return { method, path };
}

const R = {
  register: route("POST", "/v1/users", "users.register"),
  login: route("POST", "/v1/sessions", "sessions.login"),
  logout: route("DELETE", "/v1/sessions/current", "sessions.logout"),
  me: route("GET", "/v1/me", "me.get"),
  updateMe: route("PATCH", "/v1/me", "me.update"),
  user: route("GET", "/v1/users/{id}", "users.get"),
  upload: route("POST", "/v1/uploads", "uploads.create"),
  friendGroups: route("GET", "/v1/friend-groups", "friend_groups.list"),
  createFriendGroup: route("POST", "/v1/friend-groups", "friend_groups.create"),
  renameFriendGroup: route("PATCH", "/v1/friend-groups/{id}", "friend_groups.rename"),
  deleteFriendGroup: route("DELETE", "/v1/friend-groups/{id}", "friend_groups.delete"),
  sendFriendRequest: route("POST", "/v1/friend-requests", "friend_requests.create"),
  friendRequests: route("GET", "/v1/friend-requests", "friend_requests.list"),
  acceptFriendRequest: route("POST", "/v1/friend-requests/{id}/accept", "friend_requests.accept"),
  refuseFriendRequest: route("POST", "/v1/friend-requests/{id}/refuse", "friend_requests.refuse"),
  friends: route("GET", "/v1/friends", "friends.list"),
  updateFriend: route("PATCH", "/v1/friends/{user_id}", "friends.update"),
  deleteFriend: route("DELETE", "/v1/friends/{user_id}", "friends.delete"),
  searchUsers: route("GET", "/v1/search/users", "search.users"),
  searchGroups: route("GET", "/v1/search/groups", "search.groups"),
  recommendedUsers: route("GET", "/v1/recommendations/users", "recommendations.users"),
  createGroup: route("POST", "/v1/groups", "groups.create"),
  myGroups: route("GET", "/v1/groups", "groups.mine"),
  group: route("GET", "/v1/groups/{id}", "groups.get"),
  updateGroup: route("PATCH", "/v1/groups/{id}", "groups.update"),
  dismissGroup: route("DELETE", "/v1/groups/{id}", "groups.dismiss"),
  transferGroup: route("POST", "/v1/groups/{id}/transfer", "groups.transfer"),
  members: route("GET", "/v1/groups/{id}/members", "groups.members"),
  joinGroup: route("POST", "/v1/groups/{id}/join", "groups.join"),
  joinRequests: route("GET", "/v1/groups/{id}/join-requests", "groups.join_requests"),
  acceptJoin: route("POST", "/v1/groups/{id}/join-requests/{request_id}/accept", "groups.join_accept"),
  refuseJoin: route("POST", "/v1/groups/{id}/join-requests/{request_id}/refuse", "groups.join_refuse"),
  updateMember: route("PATCH", "/v1/groups/{id}/members/{user_id}", "groups.member_update"),
  removeMember: route("DELETE", "/v1/groups/{id}/members/{user_id}", "groups.member_remove"),
  conversations: route("GET", "/v1/conversations", "conversations.list"),
  messages: route("GET", "/v1/conversations/{cid}/messages", "messages.list"),
  send: route("POST", "/v1/conversations/{cid}/messages", "messages.send"),
  read: route("POST", "/v1/conversations/{cid}/read", "conversations.read"),
  notifications: route("GET", "/v1/notifications", "notifications.list"),
  readNotifications: route("POST", "/v1/notifications/read", "notifications.read"),
} as const;

export class ImApi {
  readonly baseUrl: string;
  token: string | null;
  private readonly fetchFn: FetchLike;

  constructor(opts: ImApiOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.token = opts.token ?? null;
    const f = opts.fetch ?? (globalThis.fetch?.bind(globalThis) as unknown as FetchLike | undefined);
    if (!f) throw new ApiError(0, "network", "no fetch implementation: pass one as the fetch option");
    this.fetchFn = f;
  }

  /** The absolute URL of an upload path such as `/v1/uploads/<id>` (other URLs are returned as they are). */
  uploadUrl(path: string): string {
    return path.startsWith("/v1/uploads/") ? `${this.baseUrl}${path}` : path;
  }

  // Accounts and uploads

  register(body: RequestOf<"users.register">): Promise<T.User> {
    return this.call({ ...R.register, body });
  }

  /** Logs in and keeps the token for the next calls. */
  async login(body: RequestOf<"sessions.login">): Promise<T.LoginReply> {
    const reply = await this.call<T.LoginReply>({ ...R.login, body });
    this.token = reply.token;
    return reply;
  }

  /** Ends this login (its websocket connections are closed by the server) and forgets the token. */
  async logout(): Promise<void> {
    try {
      await this.call({ ...R.logout });
    } finally {
      this.token = null;
    }
  }

  me(): Promise<T.User> {
    return this.call({ ...R.me });
  }

  updateMe(body: RequestOf<"me.update">): Promise<T.User> {
    return this.call({ ...R.updateMe, body });
  }

  user(id: number): Promise<T.PublicUser> {
    return this.call({ ...R.user, params: { id } });
  }

  /** Uploads a file (an image, say); use the reply's `url` as an avatar or an image message's content. */
  upload(data: Blob | ArrayBuffer | Uint8Array, contentType: string): Promise<T.Upload> {
    return this.call({ ...R.upload, raw: { data, contentType } });
  }

  // Friends

  friendGroups(): Promise<T.FriendGroupsReply> {
    return this.call({ ...R.friendGroups });
  }

  createFriendGroup(name: string): Promise<T.FriendGroup> {
    return this.call({ ...R.createFriendGroup, body: { name } satisfies RequestOf<"friend_groups.create"> });
  }

  renameFriendGroup(id: number, name: string): Promise<T.FriendGroup> {
    return this.call({ ...R.renameFriendGroup, params: { id }, body: { name } satisfies RequestOf<"friend_groups.rename"> });
  }

  deleteFriendGroup(id: number): Promise<T.FriendGroupDeleted> {
    return this.call({ ...R.deleteFriendGroup, params: { id } });
  }

  sendFriendRequest(body: RequestOf<"friend_requests.create">): Promise<T.FriendRequest> {
    return this.call({ ...R.sendFriendRequest, body });
  }

  friendRequests(): Promise<T.FriendRequestsReply> {
    return this.call({ ...R.friendRequests });
  }

  acceptFriendRequest(id: number, body: RequestOf<"friend_requests.accept"> = {}): Promise<T.FriendRequest> {
    return this.call({ ...R.acceptFriendRequest, params: { id }, body });
  }

  refuseFriendRequest(id: number): Promise<T.FriendRequest> {
    return this.call({ ...R.refuseFriendRequest, params: { id } });
  }

  friends(): Promise<T.FriendsReply> {
    return this.call({ ...R.friends });
  }

  updateFriend(userId: number, body: RequestOf<"friends.update">): Promise<T.FriendUpdated> {
    return this.call({ ...R.updateFriend, params: { user_id: userId }, body });
  }

  deleteFriend(userId: number): Promise<{ deleted: number }> {
    return this.call({ ...R.deleteFriend, params: { user_id: userId } });
  }

  // Search and discovery

  searchUsers(q: string, page?: { page?: number; page_size?: number }): Promise<T.UsersPage> {
    return this.call({ ...R.searchUsers, query: { q, ...page } });
  }

  searchGroups(q: string, page?: { page?: number; page_size?: number }): Promise<T.GroupsPage> {
    return this.call({ ...R.searchGroups, query: { q, ...page } });
  }

  recommendedUsers(page?: { page?: number; page_size?: number }): Promise<T.UsersPage> {
    return this.call({ ...R.recommendedUsers, query: { ...page } });
  }

  // Groups

  createGroup(body: RequestOf<"groups.create">): Promise<T.Group> {
    return this.call({ ...R.createGroup, body });
  }

  myGroups(): Promise<T.MyGroups> {
    return this.call({ ...R.myGroups });
  }

  group(id: number): Promise<T.Group> {
    return this.call({ ...R.group, params: { id } });
  }

  updateGroup(id: number, body: RequestOf<"groups.update">): Promise<T.Group> {
    return this.call({ ...R.updateGroup, params: { id }, body });
  }

  dismissGroup(id: number): Promise<{ dismissed: number }> {
    return this.call({ ...R.dismissGroup, params: { id } });
  }

  transferGroup(id: number, userId: number): Promise<T.Group> {
    return this.call({ ...R.transferGroup, params: { id }, body: { user_id: userId } satisfies RequestOf<"groups.transfer"> });
  }

  members(id: number): Promise<T.MembersReply> {
    return this.call({ ...R.members, params: { id } });
  }

  /** Joins, or files a join request when the group needs approval (`status: "pending"`). */
  joinGroup(id: number, body: RequestOf<"groups.join"> = {}): Promise<T.JoinReply> {
    return this.call({ ...R.joinGroup, params: { id }, body });
  }

  joinRequests(id: number): Promise<T.JoinRequestsReply> {
    return this.call({ ...R.joinRequests, params: { id } });
  }

  acceptJoinRequest(groupId: number, requestId: number): Promise<T.JoinRequestHandled> {
    return this.call({ ...R.acceptJoin, params: { id: groupId, request_id: requestId } });
  }

  refuseJoinRequest(groupId: number, requestId: number): Promise<T.JoinRequestHandled> {
    return this.call({ ...R.refuseJoin, params: { id: groupId, request_id: requestId } });
  }

  /** Sets a member's role (owner only) and/or mute (`muted_until` in unix ms; 0 unmutes). */
  updateMember(groupId: number, userId: number, body: RequestOf<"groups.member_update">): Promise<T.MemberUpdated> {
    return this.call({ ...R.updateMember, params: { id: groupId, user_id: userId }, body });
  }

  /** Kicks a member, or leaves when `userId` is me. */
  removeMember(groupId: number, userId: number): Promise<T.MemberRemoved> {
    return this.call({ ...R.removeMember, params: { id: groupId, user_id: userId } });
  }

  // Chat

  conversations(): Promise<T.ConversationsReply> {
    return this.call({ ...R.conversations });
  }

  /** History: the newest `limit` messages, or those before `before_seq`, or after `after_seq`; ascending. */
  messages(
    cid: string,
    q: { before_seq?: number; after_seq?: number; limit?: number } = {},
  ): Promise<T.MessagesPage> {
    return this.call({ ...R.messages, params: { cid }, query: q });
  }

  send(cid: string, body: RequestOf<"messages.send">): Promise<T.Message> {
    return this.call({ ...R.send, params: { cid }, body });
  }

  read(cid: string, seq: number): Promise<T.ReadReply> {
    return this.call({ ...R.read, params: { cid }, body: { seq } satisfies RequestOf<"conversations.read"> });
  }

  // Message box

  notifications(page?: { page?: number; page_size?: number }): Promise<T.NotificationsPage> {
    return this.call({ ...R.notifications, query: { ...page } });
  }

  /** Marks items read (all of them when `ids` is omitted). */
  readNotifications(ids?: number[]): Promise<T.UnreadReply> {
    return this.call({ ...R.readNotifications, body: ids ? { ids } : {} });
  }

  private async call<Reply>(c: Call): Promise<Reply> {
    let path: string = c.path;
    for (const [k, v] of Object.entries(c.params ?? {})) path = path.replace(`{${k}}`, encodeURIComponent(String(v)));
    const qs = Object.entries(c.query ?? {})
      .filter(([, v]) => v !== undefined && v !== "")
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join("&");
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let body: string | Blob | ArrayBuffer | Uint8Array | undefined;
    if (c.raw) {
      headers["Content-Type"] = c.raw.contentType;
      body = c.raw.data;
    } else if (c.body !== undefined || c.method === "POST" || c.method === "PATCH") {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(c.body ?? {});
    }
    let res: Awaited<ReturnType<FetchLike>>;
    try {
      res = await this.fetchFn(`${this.baseUrl}${path}${qs ? `?${qs}` : ""}`, { method: c.method, headers, body });
    } catch (e) {
      throw new ApiError(0, "network", `cannot reach the server: ${e instanceof Error ? e.message : String(e)}`);
    }
    const text = await res.text().catch(() => "");
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ApiError(res.status, err?.code ?? "http_error", err?.message ?? (text || `HTTP ${res.status}`));
    }
    return json as Reply;
  }
}
