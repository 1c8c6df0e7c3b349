/**
 * A streaming `text/event-stream` parser (the WHATWG rules): bytes in, in chunks split
 * anywhere (inside a line, inside a UTF-8 sequence, between CR and LF); events out on each
 * blank line. `data:` lines join with `\n`; comments (`:`) and fields other than `data`,
 * `event`, `id` and `retry` are ignored.
 */

/** One event of the stream. */
export interface SseEvent {
  /** `event:` (default `message`). */
  event: string;
  /** The `data:` lines, joined with `\n`. */
  data: string;
  /** The last `id:` seen (`''` when none). */
  id: string;
  /** `retry:` when this event set one, in milliseconds. */
  retry?: number;
}

export class SseParser {
  private readonly decoder = new TextDecoder();
  private line = '';
  private sawCR = false;
  private data: string[] = [];
  private event = '';
  private lastId = '';
  private retry: number | undefined;
  private first = true;

  /**
   * @param maxLineChars a line longer than this is an error (a stream that never ends a
   *   line would otherwise grow without bound)
   */
  constructor(private readonly maxLineChars = 1 << 20) {}

  /** Feeds a chunk; returns the events it completed. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.text(this.decoder.decode(chunk, { stream: true }));
  }

  /** Feeds text (for tests and string sources). */
  text(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 && this.sawCR) {
        // The LF of a CRLF: the line ended at the CR.
        this.sawCR = false;
        start = i + 1;
        continue;
      }
      this.sawCR = false;
      if (c === 10 || c === 13) {
        this.line += text.slice(start, i);
        this.sawCR = c === 13;
        this.endLine(out);
        start = i + 1;
      }
    }
    this.line += text.slice(start);
    if (this.line.length > this.maxLineChars) {
      throw new RangeError(`an event-stream line longer than ${this.maxLineChars} characters`);
    }
    return out;
  }

  private endLine(out: SseEvent[]): void {
    const line = this.line;
    this.line = '';
    if (line === '') {
      if (this.data.length > 0) {
        const event: SseEvent = { event: this.event || 'message', data: this.data.join('\n'), id: this.lastId };
        if (this.retry !== undefined) event.retry = this.retry;
        out.push(event);
      }
      this.data = [];
      this.event = '';
      this.retry = undefined;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (name) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
    }
  }
}
