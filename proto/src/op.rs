//! Frame operations. 1..=17 are goim's; 18..=21 are imcloud's multi-room extension; 22 is the drain's
//! reconnect hint; 23..=25 are room recovery
//! (26..=29 reserved for it); >= 1000 belong to applications.

/// Client heartbeat (body empty).
pub const HEARTBEAT: i32 = 2;
/// Heartbeat reply; body is the i32 online count of the connection's auth room.
pub const HEARTBEAT_REPLY: i32 = 3;
/// Upstream message from the client, handled by logic.Receive.
pub const SEND_MSG: i32 = 4;
/// Reply to [`SEND_MSG`], same seq.
pub const SEND_MSG_REPLY: i32 = 5;
/// Sent by the server just before it closes a connection; body is the reason.
pub const DISCONNECT_REPLY: i32 = 6;
/// Authenticate (first frame of every connection).
pub const AUTH: i32 = 7;
/// Authentication accepted.
pub const AUTH_REPLY: i32 = 8;
/// A batch of complete inner frames.
pub const RAW: i32 = 9;
/// Change the auth room; body is the new room id (empty = leave it).
pub const CHANGE_ROOM: i32 = 12;
pub const CHANGE_ROOM_REPLY: i32 = 13;
/// Watch more ops; body is a comma-separated list.
pub const SUB: i32 = 14;
pub const SUB_REPLY: i32 = 15;
/// Stop watching ops; body is a comma-separated list.
pub const UNSUB: i32 = 16;
pub const UNSUB_REPLY: i32 = 17;
/// imcloud: join an extra room; body is the room id.
pub const JOIN_ROOM: i32 = 18;
pub const JOIN_ROOM_REPLY: i32 = 19;
/// imcloud: leave an extra room; body is the room id.
pub const LEAVE_ROOM: i32 = 20;
pub const LEAVE_ROOM_REPLY: i32 = 21;
/// Server to client, just before a draining comet closes the connection: where and when to reconnect.
/// Body: JSON `{"reason": string, "delay_ms": number, "url": string|null}` ([`crate::ReconnectHint`]).
pub const RECONNECT_HINT: i32 = 22;
/// imcloud: join a room and recover what was missed since a position. Body: JSON
/// `{"room": string, "epoch"?: number, "offset"?: number}`.
pub const RECOVER: i32 = 23;
/// Reply to [`RECOVER`], same seq. Body: JSON `{"code","message","room","epoch","offset","recovered",
/// "reason","publications","rooms","auth_room"}`.
pub const RECOVER_REPLY: i32 = 24;
/// Server to client, inside op 9: a persistent room message with its position, to connections that joined
/// the room with [`RECOVER`]. Body: epoch u64, offset u64, op i32, room length u16, room, message.
pub const PUBLICATION: i32 = 25;
/// First application op.
pub const APP_MIN: i32 = 1000;
