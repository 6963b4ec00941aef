// Vitest settings: unit tests are fast and isolated; the integration tests start a real standalone each
// and get generous timeouts for a loaded machine.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
