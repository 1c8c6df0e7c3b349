/**
 * Push frames: `len:u32 | hlen:u16 | ver:u16 | op:u32 | seq:u32 | body`, big-endian, `len`
 * the whole frame, `hlen` 16 (a larger one is accepted and its extra bytes skipped), `ver`
 * 2 (protobuf bodies). On WebSocket one binary message is one frame; a BATCH frame's body
 * is several whole frames back to back.
 */

import { DecodeError, OP, type OpName, type PushMessage, type Sequenced } from './messages.js';
import { decodeBody, encodeBody } from './proto.js';

/** The header's length. */
export const HEADER_BYTES = 16;
/** The version of the frames this client speaks (protobuf bodies). */
export const VERSION = 2;
/** Frames larger than this are refused by default. */
export const DEFAULT_MAX_FRAME_BYTES = 1 << 20;

const NAMES: Record<number, OpName> = Object.fromEntries(
  Object.entries(OP)
    .filter(([name]) => name !== 'batch')
    .map(([name, op]) => [op, name as OpName]),
);

/** One frame holding `message` with `seq`. */
export function encodeFrame(seq: number, message: PushMessage): Uint8Array {
  const body = encodeBody(message);
  const frame = new Uint8Array(HEADER_BYTES + body.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, frame.length);
  view.setUint16(4, HEADER_BYTES);
  view.setUint16(6, VERSION);
  view.setUint32(8, OP[message.op]);
  view.setUint32(12, seq >>> 0);
  frame.set(body, HEADER_BYTES);
  return frame;
}

/**
 * The messages in `bytes`: exactly one frame (a WebSocket message), which may be a BATCH
 * of frames. Anything else — a short or long frame, another version, an unknown op, a
 * body that does not decode — is a {@link DecodeError}.
 */
export function decodeFrame(bytes: Uint8Array, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Sequenced[] {
  const out: Sequenced[] = [];
  const end = readFrame(bytes, 0, maxFrameBytes, out, true);
  if (end !== bytes.length) throw new DecodeError(`${bytes.length - end} bytes after the frame`);
  return out;
}

/** Reads the frame at `at` into `out`; returns where it ends. */
function readFrame(bytes: Uint8Array, at: number, max: number, out: Sequenced[], batchAllowed: boolean): number {
  if (bytes.length - at < HEADER_BYTES) throw new DecodeError('frame shorter than its header');
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_BYTES);
  const len = view.getUint32(0);
  const hlen = view.getUint16(4);
  const ver = view.getUint16(6);
  const op = view.getUint32(8);
  const seq = view.getUint32(12);
  if (len > max) throw new DecodeError(`frame of ${len} bytes exceeds limit ${max}`);
  if (hlen < HEADER_BYTES) throw new DecodeError(`header length ${hlen} is below 16`);
  if (len < hlen) throw new DecodeError(`frame length ${len} is below its header length ${hlen}`);
  if (ver !== VERSION) throw new DecodeError(`frame version ${ver}, this client speaks ${VERSION}`);
  if (len > bytes.length - at) throw new DecodeError(`frame of ${len} bytes, ${bytes.length - at} present`);
  const body = bytes.subarray(at + hlen, at + len);
  if (op === OP.batch) {
    if (!batchAllowed) throw new DecodeError('a batch inside a batch');
    let inner = 0;
    while (inner < body.length) inner = readFrame(body, inner, max, out, false);
    return at + len;
  }
  const name = NAMES[op];
  if (name === undefined) throw new DecodeError(`unknown op ${op}`);
  out.push({ seq, message: decodeBody(name, body) });
  return at + len;
}
