//! The IM tier's live events (ops 1000-1005, JSON `{"event","data"}`; docs/im.md "Live events") as a
//! typed union, and their parser. Invariant: `parseEvent` never throws; a frame that is not a known
//! event with the expected op comes back as `{ kind: "unknown" }`, so a newer server cannot break an
//! older client.

import { type Frame, bodyText } from "./frame.js";
import * as op from "./ops.js";
import type { Group, Message, Notification } from "./types.js";

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
