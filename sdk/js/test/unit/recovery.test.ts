// Rooms joined with recovery (ops 23-25) against a scripted comet: the position follows the publications,
// duplicates are dropped, every reconnect rejoins from the last position, and a failed recovery moves the
// position to the room's newest message and says so. The real comet's side is tested in Rust
// (imcloud/tests/recovery.rs).
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { Connection, type RecoveryReply } from "../../src/connection.js";
import { decodePublication, encodeBatch, type Frame } from "../../src/frame.js";
import * as op from "../../src/ops.js";
import { ScriptedComet, type ScriptedConn } from "./scripted_comet.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const ROOM = "live://1";

function publication(epoch: number, offset: number, body: string): Frame {
  const room = new TextEncoder().encode(ROOM);
  const msg = new TextEncoder().encode(body);
  const b = new Uint8Array(22 + room.length + msg.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, Math.floor(epoch / 2 ** 32));
  v.setUint32(4, epoch % 2 ** 32);
  v.setUint32(8, 0);
  v.setUint32(12, offset);
  v.setInt32(16, 1000);
  v.setUint16(20, room.length);
  b.set(room, 22);
  b.set(msg, 22 + room.length);
  return { ver: 1, op: op.PUBLICATION, seq: 0, body: b };
}

function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() > deadline) reject(new Error("condition not met in time"));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

describe("rooms joined with recovery", () => {
  it("decodes a publication", () => {
    const p = decodePublication(publication(1_765_000_000_123_456, 42, "hi").body);
    expect([p.epoch, p.offset, p.op, p.room, new TextDecoder().decode(p.body)]).toEqual([
      1_765_000_000_123_456,
      42,
      1000,
      ROOM,
      "hi",
    ]);
  });

  it("follows publications once, rejoins from the last one, and takes the room's position after a failed recovery", async () => {
    const asked: Record<string, unknown>[] = [];
    // What the scripted comet answers to each op 23, in turn.
    const answers: ((c: ScriptedConn, seq: number) => void)[] = [
      (c, seq) => {
        c.send(op.RECOVER_REPLY, seq, JSON.stringify({ code: 0, room: ROOM, epoch: 5, offset: 10, recovered: true, reason: null, publications: 0 }));
        c.ws.send(encodeBatch([publication(5, 11, "a"), publication(5, 11, "a again"), publication(5, 12, "b")]));
      },
      (c, seq) => {
        c.send(op.RECOVER_REPLY, seq, JSON.stringify({ code: 0, room: ROOM, epoch: 5, offset: 13, recovered: true, reason: null, publications: 1 }));
        c.ws.send(encodeBatch([publication(5, 12, "b"), publication(5, 13, "c")]));
      },
      (c, seq) => {
        c.send(op.RECOVER_REPLY, seq, JSON.stringify({ code: 0, room: ROOM, epoch: 5, offset: 40, recovered: false, reason: "history_gap", publications: 0 }));
        c.ws.send(encodeBatch([publication(5, 41, "d")]));
      },
    ];
    const comet = await ScriptedComet.start({
      onFrame: (c, f) => {
        if (f.op !== op.RECOVER) return;
        asked.push(JSON.parse(new TextDecoder().decode(f.body)));
        answers[asked.length - 1]?.(c, f.seq);
      },
    });
    cleanup.push(() => comet.close());
    const conn = new Connection({
      url: comet.url,
      auth: { mid: 7, token: "t" },
      recoverRooms: [ROOM],
      WebSocket: WebSocket as never,
      heartbeatMs: 60_000,
      backoff: { baseMs: 20, maxMs: 50, jitter: 0 },
      watchNetwork: false,
    });
    cleanup.push(() => conn.stop());
    const got: string[] = [];
    const replies: RecoveryReply[] = [];
    conn.on("publication", (p) => got.push(`${p.offset}:${new TextDecoder().decode(p.body)}`));
    conn.on("recovery", (r) => replies.push(r));
    conn.start();

    await until(() => got.length === 2);
    expect(got).toEqual(["11:a", "12:b"]);
    expect(conn.position(ROOM)).toEqual({ epoch: 5, offset: 12 });

    (await comet.authed(1)).ws.terminate();
    await until(() => got.length === 3);
    expect(asked[1]).toEqual({ room: ROOM, epoch: 5, offset: 12 });
    expect(got[2]).toBe("13:c");

    (await comet.authed(2)).ws.terminate();
    await until(() => got.length === 4);
    expect(asked[2]).toEqual({ room: ROOM, epoch: 5, offset: 13 });
    expect(got[3]).toBe("41:d");
    expect(replies.map((r) => [r.recovered, r.reason])).toEqual([
      [true, null],
      [true, null],
      [false, "history_gap"],
    ]);
    expect(asked[0]).toEqual({ room: ROOM });
    expect(conn.position(ROOM)).toEqual({ epoch: 5, offset: 41 });
  });
});
