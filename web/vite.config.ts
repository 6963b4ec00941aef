// Vite builds the client into dist/, which the api embeds (api/src/web_client.rs). The SDK is used from
// its sources (../sdk/js/src), so building the client needs no separate SDK build.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  resolve: {
    alias: {
      "@imcloud/client": fileURLToPath(new URL("../sdk/js/src/index.ts", import.meta.url)),
    },
  },
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // One small app: no need for a warning at Vite's default chunk size.
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a local standalone: the JSON API and goim queries go to the api.
    proxy: {
      "/v1": "http://127.0.0.1:3111",
      "/goim": "http://127.0.0.1:3111",
    },
  },
});
