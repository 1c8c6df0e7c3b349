/**
 * When a token expires, read only to time its refresh (the room is what checks it): the
 * middle field of an HMAC token `b64(uid).expiry.sig`, or the `exp` claim of a JWT.
 */

/** The least lead before expiry at which a new token is asked for, in seconds. */
export const MIN_LEAD_SECS = 5;
/** The longest lead: a day-long token is refreshed 5 minutes before it ends. */
export const MAX_LEAD_SECS = 300;

/** When `token` expires (Unix seconds), or `null` when it does not say. */
export function tokenExpiry(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const middle = parts[1]!;
  if (/^[0-9]+$/.test(middle)) {
    const n = Number(middle);
    return Number.isSafeInteger(n) ? n : null;
  }
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(middle)) return null;
  try {
    const b64 = middle.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isSafeInteger(exp) && exp >= 0 ? exp : null;
  } catch {
    return null;
  }
}

/**
 * How many seconds from `now` until the next token should be asked for: a fifth of the
 * time left, between {@link MIN_LEAD_SECS} and {@link MAX_LEAD_SECS} before `expiresAt`,
 * and at once (0) when less than that remains.
 */
export function refreshInSecs(expiresAt: number, now: number): number {
  const left = Math.max(0, expiresAt - now);
  const lead = Math.min(MAX_LEAD_SECS, Math.max(MIN_LEAD_SECS, left / 5));
  return Math.max(0, left - lead);
}

/** Whether `token` has expired, or will within {@link MIN_LEAD_SECS} (too late to connect with). */
export function tokenStale(token: string, now: number): boolean {
  const at = tokenExpiry(token);
  return at !== null && at <= now + MIN_LEAD_SECS;
}

/** Seconds since the Unix epoch. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}
