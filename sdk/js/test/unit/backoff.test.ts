// The reconnect backoff: exponential growth, the cap, the jitter bounds, reset.
import { describe, expect, it } from "vitest";
import { Backoff } from "../../src/backoff.js";

describe("Backoff", () => {
  it("grows by the factor and stops at the cap (no jitter)", () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, factor: 2, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(b.attempts).toBe(6);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("keeps jittered delays within ±jitter and never above the cap", () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const b = new Backoff({ baseMs: 1000, maxMs: 5000, factor: 2, jitter: 0.3 }, () => r);
      const first = b.next();
      expect(first).toBeGreaterThanOrEqual(700);
      expect(first).toBeLessThanOrEqual(1300);
      for (let i = 0; i < 10; i++) expect(b.next()).toBeLessThanOrEqual(5000);
    }
  });

  it("spreads clients: different random draws give different delays", () => {
    const delays = new Set([0.1, 0.4, 0.7, 0.9].map((r) => new Backoff({ jitter: 0.3 }, () => r).next()));
    expect(delays.size).toBe(4);
  });
});
