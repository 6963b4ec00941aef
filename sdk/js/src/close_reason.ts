//! What a server close means for reconnecting. The comet sends op 6 with the reason text just before it
//! closes (docs/protocol.md, "Closing"); the websocket close frame repeats it, cut to 123 bytes.
//! Invariant: a reason is `fatal` (the connection must not retry on its own) exactly when retrying with
//! the same credentials cannot succeed: a refused or expired token, an ended login, a replaced device, a
//! key owned by another user. Everything else (shutdown, heartbeat timeout, slow consumer, a failed
//! handshake, a network drop) is retried with backoff.

export type CloseKind =
  /** The token was refused (missing, invalid, for another user, or another user's key). */
  | "auth_refused"
  /** The token expired: log in again or mint a new token. */
  | "token_expired"
  /** The login has ended: logged out, or the password was changed. */
  | "logged_out"
  /** Another device of the same platform logged in under the `replace` device policy. */
  | "replaced_by_device"
  /** Another connection with the same key took over (backend-token connections only). */
  | "replaced"
  /** The server is shutting down or draining; reconnect (after its hint, when one came). */
  | "shutdown"
  | "heartbeat_timeout"
  | "slow_consumer"
  /** The server refused a frame of ours; a bug in the client, retried with backoff. */
  | "protocol"
  /** The handshake did not complete in time, or logic could not be reached. */
  | "auth_unavailable"
  /** The socket closed or failed without a reason from the server. */
  | "network"
  /** This client closed the connection (`stop()`), or found it dead (no heartbeat reply). */
  | "client"
  | "other";

export interface CloseInfo {
  kind: CloseKind;
  /** The server's op 6 text, else the websocket close reason, else a description. */
  reason: string;
  /** The websocket close code, when there was a close frame. */
  code?: number;
  /** Whether reconnecting with the same token is pointless. */
  fatal: boolean;
}

const FATAL: ReadonlySet<CloseKind> = new Set([
  "auth_refused",
  "token_expired",
  "logged_out",
  "replaced_by_device",
  "replaced",
]);

/** Classifies a server's close reason (op 6 body or close frame reason). */
export function classifyClose(reason: string, code?: number): CloseInfo {
  const r = reason.trim();
  const kind = kindOf(r);
  return { kind, reason: r, code, fatal: FATAL.has(kind) };
}

function kindOf(r: string): CloseKind {
  if (r.startsWith("auth failed:")) {
    const detail = r.slice("auth failed:".length).trim();
    if (detail.startsWith("token expired")) return "token_expired";
    if (detail.includes("login has ended")) return "logged_out";
    if (
      detail.startsWith("missing token") ||
      detail.startsWith("invalid token") ||
      detail.startsWith("token is for another user") ||
      detail.startsWith("key belongs to another user") ||
      detail.startsWith("bad auth body")
    ) {
      return "auth_refused";
    }
    return "auth_unavailable";
  }
  if (r === "logged out" || r.startsWith("password changed")) return "logged_out";
  if (r.startsWith("belogin")) return "replaced_by_device";
  if (r.startsWith("replaced by a new connection")) return "replaced";
  if (r.startsWith("server shutting down") || r.startsWith("draining")) return "shutdown";
  if (r.startsWith("heartbeat timeout")) return "heartbeat_timeout";
  if (r.startsWith("slow consumer")) return "slow_consumer";
  if (r.startsWith("protocol error") || r.startsWith("frame too large")) return "protocol";
  if (r === "") return "network";
  return "other";
}
