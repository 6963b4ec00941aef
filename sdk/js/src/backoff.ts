//! Jittered exponential backoff for reconnects. Invariants: the n-th delay (from 0) is
//! `min(maxMs, baseMs * factor^n)` scaled by a random factor in `[1 - jitter, 1 + jitter]` and clamped to
//! `[0, maxMs]`; `reset()` (after a successful connection, or a server reconnect hint) starts over.

export interface BackoffOptions {
  /** First delay, in milliseconds. */
  baseMs: number;
  /** Largest delay, in milliseconds. */
  maxMs: number;
  /** Growth per failed attempt. */
  factor: number;
  /** Relative spread, 0 to 1: 0.3 means ±30 %. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000, factor: 1.8, jitter: 0.3 };

export class Backoff {
  private readonly opts: BackoffOptions;
  private readonly random: () => number;
  private n = 0;

  constructor(opts: Partial<BackoffOptions> = {}, random: () => number = Math.random) {
    this.opts = { ...DEFAULT_BACKOFF, ...opts };
    this.random = random;
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.n;
  }

  /** The delay before the next attempt; counts one more failed attempt. */
  next(): number {
    const { baseMs, maxMs, factor, jitter } = this.opts;
    const raw = Math.min(maxMs, baseMs * Math.pow(factor, this.n));
    this.n += 1;
    const spread = Math.min(1, Math.max(0, jitter));
    const scaled = raw * (1 - spread + 2 * spread * this.random());
    return Math.round(Math.min(maxMs, Math.max(0, scaled)));
  }

  reset(): void {
    this.n = 0;
  }
}
