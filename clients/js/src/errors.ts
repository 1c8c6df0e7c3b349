/** What went wrong, as a code a program can switch on. */
export type PushErrorCode =
  /** Not connected now: nothing was sent. */
  | 'not_connected'
  /** The connection closed before the answer: the request may have been taken. */
  | 'connection_lost'
  /** No answer in time: the request may have been taken. */
  | 'timeout'
  /** The client was closed (by `close()`, a KICK or a refused AUTH). */
  | 'closed'
  /** The room answered with an ERROR (see `status`). */
  | 'room_error'
  /** A new token could not be had, or the room refused it. */
  | 'refresh_failed'
  /** An HTTP call (dispatch, notify pull) failed (see `status` when it answered). */
  | 'http'
  /** The room sent something this client cannot read. */
  | 'protocol'
  /** Too many requests waiting for answers: nothing was sent. */
  | 'overloaded';

/** An error of the push client. `mayHaveRun` says whether a request may have reached the room. */
export class PushError extends Error {
  override name = 'PushError';
  constructor(
    readonly code: PushErrorCode,
    message: string,
    /** The HTTP status or the room's ERROR code, when there was one. */
    readonly status?: number,
  ) {
    super(message);
  }

  /** Whether the request may have reached the room (so a retry may do it twice). */
  get mayHaveRun(): boolean {
    return this.code === 'connection_lost' || this.code === 'timeout';
  }
}
