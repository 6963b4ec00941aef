// The browser-test harness: a real `imcloud standalone` (the binary that embeds this client), Debian's
// Chromium driven by playwright-core, one browser context per person, a console-error trap on every
// page, and helpers for the steps every scenario repeats (register through the UI, open a chat).
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { deflateSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, type Locator, type Page, chromium } from "playwright-core";
import { expect } from "vitest";
// @ts-expect-error: a plain ESM script without type declarations
import { startStandalone } from "../../sdk/js/scripts/standalone.mjs";

/** How long a step may take to show on screen (a loaded machine), and how often it is looked at. */
export const W = { timeout: 30_000, interval: 100 };

/** The trimmed text of the first element a locator finds, or null when it finds none. */
export async function textOf(l: Locator): Promise<string | null> {
  if ((await l.count()) === 0) return null;
  const t = await l.first().textContent();
  return t === null ? null : t.replace(/\s+/g, " ").trim();
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = process.env.SCREENSHOT_DIR ?? path.resolve(here, "../../docs/web-client");

export interface Server {
  http: string;
  ws: string;
  log: () => string;
  stop: () => Promise<void>;
}

export async function startServer(): Promise<Server> {
  return (await startStandalone({ env: { IMCLOUD_HEARTBEAT_SECS: "5" } })) as Server;
}

/** Chromium with the flags this machine needs (docs/web-client.md, "Tests"). */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export interface Person {
  name: string;
  email: string;
  password: string;
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught page errors seen so far. */
  errors: string[];
}

let seq = 0;

export async function newPerson(browser: Browser, server: Server, name: string, viewport = { width: 1100, height: 760 }): Promise<Person> {
  const context = await browser.newContext({ viewport, baseURL: server.http });
  const page = await context.newPage();
  const errors: string[] = [];
  trap(page, errors);
  const email = `${name.toLowerCase()}-${process.pid}-${Date.now()}-${++seq}@example.com`;
  return { name, email, password: `${name}-password-1`, context, page, errors };
}

export function trap(page: Page, errors: string[]): void {
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
}

export async function register(p: Person): Promise<void> {
  const page = p.page;
  await page.goto("/");
  await page.getByRole("button", { name: "Register" }).click();
  await page.getByLabel("Email").fill(p.email);
  await page.getByLabel("Nickname").fill(p.name);
  await page.getByLabel("Password").fill(p.password);
  await page.getByRole("button", { name: "Register" }).click();
  await expect.poll(() => textOf(page.locator(".me-name")), W).toBe(p.name);
  await connected(page);
}

/** Waits until the websocket is open (no connection banner). */
export async function connected(page: Page): Promise<void> {
  await page.locator(".chat, .panel").first().waitFor({ state: "visible", timeout: W.timeout });
  await expect.poll(() => page.locator(".conn-banner").count(), W).toBe(0);
}

export async function openFriendChat(page: Page, friendName: string): Promise<void> {
  await page.getByRole("tab", { name: /Friends/ }).click();
  await page.locator(".row", { hasText: friendName }).first().click();
  await expect.poll(() => textOf(page.locator(".chat-head h2")), W).toBe(friendName);
}

export async function send(page: Page, text: string): Promise<void> {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send", exact: true }).click();
}

/** The texts of the open chat's messages, in the order shown. */
export async function shownTexts(page: Page): Promise<string[]> {
  return page.locator(".messages .msg:not(.pending) .msg-text").allTextContents();
}

export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

const axeSource = readFileSync(path.resolve(here, "../node_modules/axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical findings on the page as it is now (WCAG 2 A and AA rules). */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, so the page's Content-Security-Policy stays on.
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[] }> } }).axe;
    const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  return found.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.join(", ")}`);
}

/** A small valid PNG (a 24x16 gradient), made here so the test ships no binary file. */
export function pngBytes(): Buffer {
  const width = 24;
  const height = 16;
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    for (let x = 0; x < width; x++) {
      const o = y * (width * 3 + 1) + 1 + x * 3;
      raw[o] = 20 + x * 9;
      raw[o + 1] = 90;
      raw[o + 2] = 200 - y * 8;
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}
