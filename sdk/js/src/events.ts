//! The IM tier's live events (ops 1000-1005, JSON `{"event","data"}`; docs/im.md "Live events") as a
//! typed union, and their parser. Invariant: `parseEvent` never throws; a frame that is not a known
//! event with the expected op comes back as `{ kind: "unknown" }`, so a newer server cannot break an
//! older client.

import { type Frame, bodyText } from "./frame.js";
import * as op from "./ops.js";
import type { FriendRequest, Group, JoinRequest, Message, Notification, PublicUser } from "./types.js";

export interface ReadEvent {
  conversation_id: string;
  user_id: number;
  seq: number;
}

export interface PresenceEvent {
  user_id: number;
  online: boolean;
}

export interface FriendEvent {
  /** The other user. */
  user_id: number;
  change: "added" | "removed";
}

/** A group change; `data` always has `group_id` and `change`. */
export type GroupEvent =
  | { group_id: number; change: "joined" | "left"; user_id: number }
  | { group_id: number; change: "kicked"; user_id: number; by: number }
  | { group_id: number; change: "role"; user_id: number; role: "owner" | "admin" | "member" }
  | { group_id: number; change: "muted"; user_id: number; muted_until: number }
  | { group_id: number; change: "updated"; group: Group }
  | { group_id: number; change: "owner"; user_id: number; previous_owner: number }
  | { group_id: number; change: "dismissed" };

export type ImEvent =
  | { kind: "message"; data: Message }
  | { kind: "read"; data: ReadEvent }
  | { kind: "notification"; data: Notification }
  | { kind: "presence"; data: PresenceEvent }
  | { kind: "group"; data: GroupEvent }
  | { kind: "friend"; data: FriendEvent }
  | { kind: "unknown"; op: number; body: Uint8Array };

const NAMES: Record<number, ImEvent["kind"]> = {
  [op.EVENT_MESSAGE]: "message",
  [op.EVENT_READ]: "read",
  [op.EVENT_NOTIFICATION]: "notification",
  [op.EVENT_PRESENCE]: "presence",
  [op.EVENT_GROUP]: "group",
  [op.EVENT_FRIEND]: "friend",
};

/** Reads one pushed application frame as an IM event. */
export function parseEvent(frame: Frame): ImEvent {
  const unknown: ImEvent = { kind: "unknown", op: frame.op, body: frame.body };
  const kind = NAMES[frame.op];
  if (!kind) return unknown;
  let v: unknown;
  try {
    v = JSON.parse(bodyText(frame.body));
  } catch {
    return unknown;
  }
  if (typeof v !== "object" || v === null) return unknown;
  const { event, data } = v as { event?: unknown; data?: unknown };
  if (event !== kind || typeof data !== "object" || data === null) return unknown;
  return { kind, data } as ImEvent;
}

/** A message-box item's payload, typed by its kind (docs/im.md, "The message box"). */
export type NotificationContent =
  /** For the addressee; `user` is the requester. */
  | { kind: "friend_request"; payload: FriendRequest }
  /** For the requester; `user` is the addressee, `status` accepted or refused. */
  | { kind: "friend_request_result"; payload: FriendRequest }
  | { kind: "group_join_request"; payload: { request: JoinRequest; group_id: number; group_name: string; user: PublicUser } }
  | {
      kind: "group_join_result";
      payload: { request_id: number; group_id: number; group_name: string; status: "accepted" | "refused" };
    }
  | {
      kind: "group_notice";
      payload: { group_id: number; name: string; change: "kicked"; by: number } | { group_id: number; name: string; change: "dismissed" };
    }
  /** From a trusted backend (`POST /v1/notices`). */
  | { kind: "system"; payload: { title: string; content: string } }
  /** A kind this SDK does not know yet. */
  | { kind: "other"; name: string; payload: unknown };

const NOTIFICATION_KINDS = new Set([
  "friend_request",
  "friend_request_result",
  "group_join_request",
  "group_join_result",
  "group_notice",
  "system",
]);

/** Types a message-box item's payload by its `kind`. */
export function notificationContent(n: Notification): NotificationContent {
  if (NOTIFICATION_KINDS.has(n.kind) && typeof n.payload === "object" && n.payload !== null) {
    return { kind: n.kind, payload: n.payload } as NotificationContent;
  }
  return { kind: "other", name: n.kind, payload: n.payload };
}
