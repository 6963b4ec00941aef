//! Frame operations (goim's 2-17, imcloud's 18-25) and the IM tier's live-event ops (1000-1005).
//! Invariant: the values equal `proto/src/op.rs` and docs/protocol.md; ops 26-29 are reserved (room-history
//! recovery) and, like every other unknown op from 22 to 999, are ignored by the connection.

export const HEARTBEAT = 2;
export const HEARTBEAT_REPLY = 3;
export const SEND_MSG = 4;
export const SEND_MSG_REPLY = 5;
export const DISCONNECT_REPLY = 6;
export const AUTH = 7;
export const AUTH_REPLY = 8;
export const RAW = 9;
export const CHANGE_ROOM = 12;
export const CHANGE_ROOM_REPLY = 13;
export const SUB = 14;
export const SUB_REPLY = 15;
export const UNSUB = 16;
export const UNSUB_REPLY = 17;
export const JOIN_ROOM = 18;
export const JOIN_ROOM_REPLY = 19;
export const LEAVE_ROOM = 20;
export const LEAVE_ROOM_REPLY = 21;
/** Server to client, just before a drain closes the connection: `{"reason","delay_ms","url"}`. */
export const RECONNECT_HINT = 22;
/** Join a room and recover what was missed since a position: `{"room","epoch"?,"offset"?}`. */
export const RECOVER = 23;
/** Reply to op 23 (same seq): `{"code","message","room","epoch","offset","recovered","reason","publications",…}`. */
export const RECOVER_REPLY = 24;
/** Inside op 9: a persistent room message with its position (see `decodePublication`). */
export const PUBLICATION = 25;
/** First application op. */
export const APP_MIN = 1000;

/** The IM tier's live events (docs/im.md, "Live events"). */
export const EVENT_MESSAGE = 1000;
export const EVENT_READ = 1001;
export const EVENT_NOTIFICATION = 1002;
export const EVENT_PRESENCE = 1003;
export const EVENT_GROUP = 1004;
export const EVENT_FRIEND = 1005;
