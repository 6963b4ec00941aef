//! The goim binary frame codec: `packLen i32 | headerLen i16 (=16) | ver i16 | op i32 | seq i32 | body`,
//! big-endian, packLen counting the header too; and op 9 raw batches (an outer header whose body is
//! complete inner frames back to back). Invariants: decoding never copies a body (bodies are views of
//! the received buffer), every malformed input throws a `FrameError` with one of the five classes the
//! Rust codec uses (`proto/testdata/frame_vectors.json` holds the vectors both test suites read), and
//! nothing here depends on a runtime API beyond `Uint8Array`, `DataView` and `TextEncoder`/`TextDecoder`.

import { RAW } from "./ops.js";

/** Length of the fixed frame header. */
export const HEADER_LEN = 16;
/** The protocol version imcloud writes. */
export const VERSION = 1;
/** The server's default bound on a client-to-server body (`IMCLOUD_MAX_CLIENT_BODY`). */
export const MAX_CLIENT_BODY = 4096;

/** One decoded frame; `body` is a view of the buffer it was decoded from. */
export interface Frame {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

/** Why a frame could not be decoded, in the classes the Rust codec uses. */
export type FrameErrorKind = "truncated" | "header_len" | "pack_len" | "too_large" | "trailing";

export class FrameError extends Error {
  readonly kind: FrameErrorKind;
  constructor(kind: FrameErrorKind, message: string) {
    super(message);
    this.name = "FrameError";
    this.kind = kind;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of a string (or the bytes themselves). */
export function toBytes(body: Uint8Array | string | undefined): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  return typeof body === "string" ? encoder.encode(body) : body;
}

/** A body as UTF-8 text (invalid sequences become U+FFFD). */
export function bodyText(body: Uint8Array): string {
  return decoder.decode(body);
}

function asBytes(buf: Uint8Array | ArrayBuffer): Uint8Array {
  return buf instanceof Uint8Array ? buf : new Uint8Array(buf);
}

interface Header {
  packLen: number;
  ver: number;
  op: number;
  seq: number;
}

function parseHeader(buf: Uint8Array, maxBody: number): Header {
  if (buf.length < HEADER_LEN) {
    throw new FrameError("truncated", `truncated frame: need ${HEADER_LEN} bytes, have ${buf.length}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_LEN);
  const packLen = view.getInt32(0);
  const headerLen = view.getInt16(4);
  const ver = view.getInt16(6);
  const op = view.getInt32(8);
  const seq = view.getInt32(12);
  if (headerLen !== HEADER_LEN) {
    throw new FrameError("header_len", `bad header length ${headerLen} (must be 16)`);
  }
  if (packLen < HEADER_LEN) {
    throw new FrameError("pack_len", `bad packet length ${packLen}`);
  }
  const bodyLen = packLen - HEADER_LEN;
  if (bodyLen > maxBody) {
    throw new FrameError("too_large", `body of ${bodyLen} bytes exceeds the limit of ${maxBody}`);
  }
  return { packLen, ver, op, seq };
}

function writeHeader(view: DataView, at: number, bodyLen: number, ver: number, op: number, seq: number): void {
  view.setInt32(at, HEADER_LEN + bodyLen);
  view.setInt16(at + 4, HEADER_LEN);
  view.setInt16(at + 6, ver);
  view.setInt32(at + 8, op);
  view.setInt32(at + 12, seq);
}

/** Encodes one frame. A string body is sent as UTF-8. */
export function encodeFrame(op: number, seq: number, body?: Uint8Array | string, ver: number = VERSION): Uint8Array {
  const b = toBytes(body);
  const out = new Uint8Array(HEADER_LEN + b.length);
  writeHeader(new DataView(out.buffer), 0, b.length, ver, op, seq);
  out.set(b, HEADER_LEN);
  return out;
}

/**
 * Decodes exactly one frame filling `buf` (one websocket message). `maxBody` bounds the body length
 * (no bound by default: server pushes may be up to the server's push limit).
 */
export function decodeFrame(buf: Uint8Array | ArrayBuffer, maxBody: number = Infinity): Frame {
  const bytes = asBytes(buf);
  const h = parseHeader(bytes, maxBody);
  if (bytes.length < h.packLen) {
    throw new FrameError("truncated", `truncated frame: need ${h.packLen} bytes, have ${bytes.length}`);
  }
  if (bytes.length > h.packLen) {
    throw new FrameError("trailing", `${bytes.length - h.packLen} unexpected bytes after the frame`);
  }
  return { ver: h.ver, op: h.op, seq: h.seq, body: bytes.subarray(HEADER_LEN, h.packLen) };
}

/** Splits the body of an op 9 frame into its inner frames (views of `body`). */
export function splitBatch(body: Uint8Array, maxBody: number = Infinity): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  while (at < body.length) {
    const rest = body.subarray(at);
    const h = parseHeader(rest, maxBody);
    if (rest.length < h.packLen) {
      throw new FrameError("truncated", `truncated frame: need ${h.packLen} bytes, have ${rest.length}`);
    }
    out.push({ ver: h.ver, op: h.op, seq: h.seq, body: rest.subarray(HEADER_LEN, h.packLen) });
    at += h.packLen;
  }
  return out;
}

/** Encodes frames as one op 9 raw batch (the websocket form: outer header, then the inner frames). */
export function encodeBatch(frames: readonly Frame[]): Uint8Array {
  const inner = frames.reduce((n, f) => n + HEADER_LEN + f.body.length, 0);
  const out = new Uint8Array(HEADER_LEN + inner);
  const view = new DataView(out.buffer);
  writeHeader(view, 0, inner, VERSION, RAW, 0);
  let at = HEADER_LEN;
  for (const f of frames) {
    writeHeader(view, at, f.body.length, f.ver, f.op, f.seq);
    out.set(f.body, at + HEADER_LEN);
    at += HEADER_LEN + f.body.length;
  }
  return out;
}

/**
 * The application frames one websocket message carries: the inner frames of an op 9 batch, or the frame
 * itself otherwise.
 */
export function unbatch(frame: Frame): Frame[] {
  return frame.op === RAW ? splitBatch(frame.body) : [frame];
}

/** An op 25 body: a persistent room message with its place in the room's history. */
export interface Publication {
  epoch: number;
  offset: number;
  /** The op the message was pushed with. */
  op: number;
  room: string;
  body: Uint8Array;
}

/** Decodes an op 25 body: `epoch u64 | offset u64 | op i32 | roomLen u16 | room | message` (big-endian;
 * epochs and offsets stay below 2^53). */
export function decodePublication(body: Uint8Array): Publication {
  if (body.length < 22) throw new FrameError("truncated", `publication of ${body.length} bytes`);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const u64 = (at: number) => v.getUint32(at) * 2 ** 32 + v.getUint32(at + 4);
  const len = v.getUint16(20);
  if (body.length < 22 + len) throw new FrameError("truncated", "publication room");
  return {
    epoch: u64(0),
    offset: u64(8),
    op: v.getInt32(16),
    room: decoder.decode(body.subarray(22, 22 + len)),
    body: body.subarray(22 + len),
  };
}
