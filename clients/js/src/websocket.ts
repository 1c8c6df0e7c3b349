/**
 * The WebSocket transport: one push frame per binary message (protobuf bodies, the
 * default), or one JSON message per text message.
 */

import { decodeFrame, encodeFrame } from './frame.js';
import { decodeJson, encodeJson } from './json.js';
import type { Auth, PushMessage, Sequenced } from './messages.js';
import type { Transport, TransportHandlers } from './transport.js';

/** The part of the WebSocket interface the client uses (the browser's, Node's, or `ws`'s). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A WebSocket constructor (`globalThis.WebSocket` by default). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The wire form of a WebSocket connection. */
export type Format = 'binary' | 'json';

export class WebSocketTransport implements Transport {
  readonly name = 'websocket' as const;
  private readonly ws: WebSocketLike;
  private authenticated = false;
  private ended = false;
  private opened = false;

  constructor(
    readonly url: string,
    WS: WebSocketConstructor,
    private readonly format: Format,
    private readonly maxFrameBytes: number,
    auth: { seq: number; message: Auth },
    private readonly handlers: TransportHandlers,
  ) {
    this.ws = new WS(url);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      this.opened = true;
      this.write(auth.seq, auth.message);
    };
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onerror = () => {
      // A close event follows and says how it ended — except in some runtimes (Node 20's
      // WebSocket after a failed connect), so the error ends it if no close comes.
      if (this.ended) return;
      if (!this.opened) {
        this.end({ reason: 'the WebSocket could not connect' });
        this.closeSocket(1000, '');
      } else {
        setTimeout(() => this.end({ reason: 'WebSocket error' }), 1000);
      }
    };
    this.ws.onclose = (event) => {
      this.end({ reason: event.reason || `closed with status ${event.code}`, code: event.code });
    };
  }

  send(seq: number, message: PushMessage): void {
    if (this.ended || this.ws.readyState !== 1) throw new Error('the WebSocket is not open');
    this.write(seq, message);
  }

  close(code = 1000, reason = ''): void {
    if (this.ended) return;
    this.end({ reason: reason || 'closed by the client', code });
    this.closeSocket(code, reason);
  }

  /**
   * Closes the socket. Browsers take only 1000 and 3000–4999 from a client, and a reason
   * of at most 123 bytes: anything else becomes 1000 with a shortened reason.
   */
  private closeSocket(code: number, reason: string): void {
    const allowed = code === 1000 || (code >= 3000 && code <= 4999);
    let short = reason;
    while (new TextEncoder().encode(short).length > 123) short = short.slice(0, -1);
    try {
      this.ws.close(allowed ? code : 1000, short);
    } catch {
      try {
        this.ws.close();
      } catch {
        // Already closing.
      }
    }
  }

  private write(seq: number, message: PushMessage): void {
    this.ws.send(this.format === 'json' ? encodeJson(seq, message) : encodeFrame(seq, message));
  }

  private receive(data: unknown): void {
    if (this.ended) return;
    let messages: Sequenced[];
    try {
      if (typeof data === 'string') {
        messages = decodeJson(data);
      } else if (data instanceof ArrayBuffer) {
        messages = decodeFrame(new Uint8Array(data), this.maxFrameBytes);
      } else if (ArrayBuffer.isView(data)) {
        messages = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.maxFrameBytes);
      } else {
        throw new Error('a WebSocket message that is neither text nor bytes');
      }
    } catch (error) {
      // Out of step with the room: close, and reconnect.
      this.handlers.onError(error as Error);
      this.end({ reason: `unreadable message: ${(error as Error).message}`, code: 1007 });
      this.closeSocket(4007, 'unreadable message');
      return;
    }
    if (messages.some((m) => m.message.op === 'auth_reply')) this.authenticated = true;
    this.handlers.onMessages(messages);
  }

  private end(close: { reason: string; code?: number }): void {
    if (this.ended) return;
    this.ended = true;
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    this.handlers.onClose({ ...close, authenticated: this.authenticated });
  }
}
