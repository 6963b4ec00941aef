//! @imcloud/client: the public surface of the SDK. Invariant: everything an app needs is exported from
//! here, and nothing here has a runtime dependency.

export * from "./frame.js";
export * as ops from "./ops.js";
export { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
export { classifyClose, type CloseInfo, type CloseKind } from "./close_reason.js";
export {
  Connection,
  type ConnectionEvents,
  type ConnectionOptions,
  type ConnectionState,
  type Credentials,
  type PublicationEvent,
  type RecoveryReply,
  type RoomPosition,
  type ReconnectHint,
  type RoomsReply,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./connection.js";
export { discoverComets, type CometDirectory } from "./discovery.js";
export { Emitter, type Listener } from "./emitter.js";
export * from "./errors.js";
export {
  notificationContent,
  parseEvent,
  type FriendEvent,
  type GroupEvent,
  type ImEvent,
  type NotificationContent,
  type PresenceEvent,
  type ReadEvent,
} from "./events.js";
export { ImApi, type FetchLike, type ImApiOptions } from "./api.js";
export { MessageSync, type HistoryPage, type SyncMessage, type SyncOptions, type SyncSource } from "./sync.js";
export { ImClient, newClientMsgId, type ImClientEvents, type ImClientOptions, type SendOptions } from "./client.js";
export type * from "./types.js";
