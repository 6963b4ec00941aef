// Which server close reasons stop the connection (never retry a refused token) and which are retried.
import { describe, expect, it } from "vitest";
import { classifyClose } from "../../src/close_reason.js";

describe("classifyClose", () => {
  const fatal: [string, string][] = [
    ["auth failed: missing token", "auth_refused"],
    ["auth failed: invalid token: InvalidSignature", "auth_refused"],
    ["auth failed: token is for another user", "auth_refused"],
    ["auth failed: key belongs to another user's connection", "auth_refused"],
    ["auth failed: bad auth body: missing field `mid`", "auth_refused"],
    ["auth failed: token expired", "token_expired"],
    ["auth failed: this login has ended (logged out)", "logged_out"],
    ["logged out", "logged_out"],
    ["password changed: log in again", "logged_out"],
    ["belogin: logged in on another web device", "replaced_by_device"],
    ["replaced by a new connection with the same key", "replaced"],
  ];
  for (const [reason, kind] of fatal) {
    it(`"${reason}" is fatal (${kind})`, () => {
      expect(classifyClose(reason)).toMatchObject({ kind, fatal: true });
    });
  }

  const retried: [string, string][] = [
    ["server shutting down", "shutdown"],
    ["heartbeat timeout", "heartbeat_timeout"],
    ["slow consumer: outbound queue full", "slow_consumer"],
    ["auth failed: handshake timeout", "auth_unavailable"],
    ["auth failed: logic unavailable: connection refused", "auth_unavailable"],
    ["protocol error: unsupported op 11", "protocol"],
    ["frame too large: body of 5000 bytes exceeds the limit of 4096", "protocol"],
    ["", "network"],
    ["something new", "other"],
  ];
  for (const [reason, kind] of retried) {
    it(`"${reason}" is retried (${kind})`, () => {
      expect(classifyClose(reason, 1001)).toMatchObject({ kind, fatal: false, code: 1001 });
    });
  }
});
