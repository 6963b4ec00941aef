//! `npm pack`, then install the tarball into an empty project and use it by its package name, as an app
//! would: the exports map, the ESM entry, the type declarations and no runtime dependency. Leaves the
//! tarball in $PACK_DIR (default: a temporary directory) and prints its path.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = process.env.PACK_DIR ?? mkdtempSync(path.join(os.tmpdir(), "imcloud-pack-"));
const npm = (args, cwd) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });

const name = npm(["pack", "--silent", "--pack-destination", out], root).trim().split("\n").pop();
const tarball = path.join(out, name);
const app = mkdtempSync(path.join(os.tmpdir(), "imcloud-pack-app-"));
writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
npm(["install", "--silent", "--no-audit", "--no-fund", "--offline", tarball], app);
const pkg = path.join(app, "node_modules/@imcloud/client");
for (const f of ["dist/index.js", "dist/index.d.ts", "README.md"]) {
  if (!existsSync(path.join(pkg, f))) throw new Error(`the package lacks ${f}`);
}
if (existsSync(path.join(app, "node_modules/.package-lock.json"))) {
  const lock = JSON.parse(readFileSync(path.join(app, "node_modules/.package-lock.json"), "utf8"));
  const extra = Object.keys(lock.packages ?? {}).filter((p) => p !== "node_modules/@imcloud/client");
  if (extra.length > 0) throw new Error(`runtime dependencies installed with the package: ${extra.join(", ")}`);
}
const probe = `
  import { ImClient, decodeFrame, encodeFrame, ops } from "@imcloud/client";
  const f = decodeFrame(encodeFrame(ops.HEARTBEAT, 7));
  if (typeof ImClient !== "function" || f.op !== 2 || f.seq !== 7) process.exit(1);
`;
execFileSync("node", ["--input-type=module", "-e", probe], { cwd: app, stdio: "inherit" });
console.log(`package ok: ${tarball}`);
