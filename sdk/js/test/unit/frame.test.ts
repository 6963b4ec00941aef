// The shared codec vectors (proto/testdata/frame_vectors.json, also read by proto/tests/frame_vectors.rs)
// against the TypeScript codec, plus what the vectors cannot say (no copies, string bodies).
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { FrameError, decodeFrame, encodeBatch, encodeFrame, splitBatch, unbatch, type Frame } from "../../src/frame.js";
import { RAW } from "../../src/ops.js";

interface VFrame {
  name?: string;
  hex: string;
  ver: number;
  op: number;
  seq: number;
  body_hex: string;
}
interface Vectors {
  frames: VFrame[];
  batches: { name: string; hex: string; frames: Omit<VFrame, "hex">[] }[];
  malformed: { name: string; mode: "frame" | "batch"; hex: string; max_body?: number; error: string }[];
}

const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../proto/testdata/frame_vectors.json");
const vectors = JSON.parse(readFileSync(file, "utf8")) as Vectors;

const unhex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const fields = (f: Frame) => ({ ver: f.ver, op: f.op, seq: f.seq, body_hex: hex(f.body) });

describe("shared frame vectors", () => {
  it("has every section", () => {
    expect(vectors.frames.length).toBeGreaterThanOrEqual(10);
    expect(vectors.batches.length).toBeGreaterThanOrEqual(3);
    expect(vectors.malformed.length).toBeGreaterThanOrEqual(10);
  });

  for (const v of vectors.frames) {
    it(`frame ${v.name}: decodes to its fields and encodes to its bytes`, () => {
      const f = decodeFrame(unhex(v.hex));
      expect(fields(f)).toEqual({ ver: v.ver, op: v.op, seq: v.seq, body_hex: v.body_hex });
      expect(hex(encodeFrame(v.op, v.seq, unhex(v.body_hex), v.ver))).toBe(v.hex);
    });
  }

  for (const b of vectors.batches) {
    it(`batch ${b.name}: splits into its frames and is rebuilt from them`, () => {
      const outer = decodeFrame(unhex(b.hex));
      expect(outer.op).toBe(RAW);
      expect(splitBatch(outer.body).map(fields)).toEqual(b.frames);
      expect(unbatch(outer).map(fields)).toEqual(b.frames);
      const rebuilt = encodeBatch(b.frames.map((f) => ({ ver: f.ver, op: f.op, seq: f.seq, body: unhex(f.body_hex) })));
      expect(hex(rebuilt)).toBe(b.hex);
    });
  }

  for (const m of vectors.malformed) {
    it(`malformed ${m.name}: fails with ${m.error}`, () => {
      const bytes = unhex(m.hex);
      const max = m.max_body ?? Infinity;
      let err: unknown;
      try {
        if (m.mode === "frame") decodeFrame(bytes, max);
        else splitBatch(bytes, max);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FrameError);
      expect((err as FrameError).kind).toBe(m.error);
    });
  }
});

describe("codec", () => {
  it("decodes bodies as views of the received buffer, without copying", () => {
    const msg = encodeBatch([{ ver: 1, op: 1000, seq: 0, body: new TextEncoder().encode("hi") }]);
    const outer = decodeFrame(msg.buffer as ArrayBuffer);
    const [inner] = splitBatch(outer.body);
    expect(inner!.body.buffer).toBe(msg.buffer);
    expect(new TextDecoder().decode(inner!.body)).toBe("hi");
  });

  it("encodes string bodies as UTF-8", () => {
    const f = decodeFrame(encodeFrame(4, 9, "héllo"));
    expect(f.body.length).toBe(6);
    expect(new TextDecoder().decode(f.body)).toBe("héllo");
  });

  it("leaves frames other than op 9 whole in unbatch", () => {
    const f = decodeFrame(encodeFrame(1000, 0, "x"));
    expect(unbatch(f)).toEqual([f]);
  });
});
