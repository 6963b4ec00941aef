// The browser tests: one real standalone and one Chromium for the whole file, scenarios in order, with
// timeouts generous enough for a loaded 2-core machine (no timing is asserted).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
