// The web client in a real browser against a real standalone (issue 14 §3). The scenarios run in order
// and build on each other (Alice and Bob become friends first), each step checked on the screen of the
// person it concerns. Every page's console is watched: any error fails the test it happened in.
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Person,
  type Server,
  accessibilityProblems,
  connected,
  launchBrowser,
  newPerson,
  openFriendChat,
  pngBytes,
  W,
  textOf,
  register,
  send,
  shot,
  shownTexts,
  startServer,
  trap,
} from "./harness";
// @ts-expect-error: a plain ESM script without type declarations
import { API_KEY } from "../../sdk/js/scripts/standalone.mjs";

let server: Server;
let browser: Browser;
let alice: Person;
let bob: Person;
const people: Person[] = [];

beforeAll(async () => {
  server = await startServer();
  browser = await launchBrowser();
  alice = await newPerson(browser, server, "Alice");
  bob = await newPerson(browser, server, "Bob");
  people.push(alice, bob);
});

afterEach((ctx) => {
  const errors = people.flatMap((p) => p.errors.splice(0).map((e) => `${p.name}: ${e}`));
  if (errors.length > 0 && ctx.task.result?.state !== "fail") {
    throw new Error(`console errors during "${ctx.task.name}":\n${errors.join("\n")}`);
  }
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe("web client", () => {
  it("serves the client at / and keeps the API routes", async () => {
    const index = await fetch(`${server.http}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(await index.text()).toContain('<div id="app">');
    expect((await fetch(`${server.http}/healthz`)).status).toBe(200);
    const openapi = await fetch(`${server.http}/v1/openapi.json`);
    expect(openapi.headers.get("content-type")).toContain("application/json");
    const missing = await fetch(`${server.http}/no-such-page`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: expect.any(Number) });
  });

  it("two people register, become friends through the message box, chat live both ways, and a reload shows the history once, in order", async () => {
    await register(alice);
    await register(bob);

    // Alice finds Bob by email and asks, with a note and a friend group.
    const a = alice.page;
    await a.getByRole("button", { name: "Find" }).click();
    await a.getByLabel("Account number, email or nickname").fill(bob.email);
    await a.getByRole("button", { name: "Search" }).click();
    await a.getByRole("button", { name: "Add friend" }).click();
    await a.getByLabel("Note").fill("Hi Bob, Alice here");
    await a.getByLabel("Friend group").selectOption({ label: "My friends" });
    await a.getByRole("button", { name: "Send request" }).click();
    await a.getByText("Request sent", { exact: true }).first().waitFor({ state: "visible", timeout: W.timeout });
    await a.getByRole("button", { name: "Close" }).click();

    // Bob's message box counts it live; he accepts it there.
    const b = bob.page;
    await expect.poll(() => textOf(b.locator("[data-test=box-unread]")), W).toBe("1");
    await b.locator("[data-test=open-box]").click();
    const item = b.locator(".box-item[data-kind=friend_request]");
    await expect.poll(() => textOf(item), W).toContain("Alice wants to be your friend");
    await expect.poll(() => textOf(item), W).toContain("Hi Bob, Alice here");
    await shot(b, "message-box");
    expect(await accessibilityProblems(b)).toEqual([]);
    await item.getByLabel("Friend group").selectOption({ label: "My friends" });
    await item.getByRole("button", { name: "Accept" }).click();
    await expect.poll(() => textOf(item.locator("[data-test=request-status]")), W).toBe("Accepted");
    await b.getByRole("button", { name: "Close" }).click();
    await b.locator(".row", { hasText: "Alice" }).first().waitFor({ state: "visible", timeout: W.timeout });
    await a.locator(".row", { hasText: "Bob" }).first().waitFor({ state: "visible", timeout: W.timeout });
    // Alice's message box has the result.
    await expect.poll(() => textOf(a.locator("[data-test=box-unread]")), W).toBe("1");
    await a.locator("[data-test=open-box]").click();
    await expect.poll(() => textOf(a.locator(".box-item[data-kind=friend_request_result]")), W).toContain("Bob accepted your friend request");
    await expect.poll(() => a.locator("[data-test=box-unread]").count(), W).toBe(0);
    await a.getByRole("button", { name: "Close" }).click();

    // Live chat both ways, interleaved.
    await openFriendChat(a, "Bob");
    await openFriendChat(b, "Alice");
    const lines = ["hello Bob", "hi Alice", "how are you?", "fine, thanks", "see you", "bye"];
    for (let i = 0; i < lines.length; i++) {
      const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
      await send(from, lines[i]!);
      await expect.poll(() => textOf(to.locator(".msg.theirs .msg-text").last()), W).toBe(lines[i]!);
    }
    await expect.poll(() => shownTexts(a), W).toEqual(lines);
    await expect.poll(() => shownTexts(b), W).toEqual(lines);
    // Bob has the chat open, so Alice's messages show as read.
    await expect.poll(() => a.locator(".msg.mine .state").last().getAttribute("data-state"), W).toBe("read");
    await shot(a, "chat-window");
    expect(await accessibilityProblems(a)).toEqual([]);

    // A reload: the same history, once, in order.
    await b.reload();
    await connected(b);
    await openFriendChat(b, "Alice");
    await expect.poll(() => shownTexts(b), W).toEqual(lines);
    const seqs = await b.locator(".messages .msg[data-seq]").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-seq"))));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("unread badges appear for a chat that is not open and clear when it is read", async () => {
    const a = alice.page;
    const b = bob.page;
    await a.getByRole("button", { name: "Back to the lists" }).click();
    await a.getByRole("tab", { name: /Groups/ }).click();
    await send(b, "are you there?");
    await send(b, "ping");
    await a.getByRole("tab", { name: /Friends/ }).click();
    await expect.poll(() => textOf(a.locator(".row", { hasText: "Bob" }).locator("[data-test=unread]")), W).toBe("2");
    await a.getByRole("tab", { name: /Chats/ }).click();
    const convRow = a.locator(".row[data-conversation]", { hasText: "Bob" });
    await expect.poll(() => textOf(convRow.locator("[data-test=unread]")), W).toBe("2");
    await expect.poll(() => textOf(convRow.locator(".preview")), W).toBe("ping");
    await shot(a, "main-panel");
    expect(await accessibilityProblems(a)).toEqual([]);
    await convRow.click();
    await expect.poll(() => textOf(a.locator(".msg.theirs .msg-text").last()), W).toBe("ping");
    await expect.poll(() => convRow.locator("[data-test=unread]").count(), W).toBe(0);
    // The read state is the server's: once it has it, it stays cleared after a reload.
    const token = await a.evaluate(() => localStorage.getItem("imcloud.token"));
    const unread = async () => {
      const r = await fetch(`${server.http}/v1/conversations`, { headers: { Authorization: `Bearer ${token}` } });
      return ((await r.json()) as { conversations: { unread: number }[] }).conversations.map((c) => c.unread);
    };
    await expect.poll(unread, W).toEqual([0]);
    await a.reload();
    await connected(a);
    await a.getByRole("tab", { name: /Chats/ }).click();
    await a.locator(".row[data-conversation]", { hasText: "Bob" }).first().waitFor({ state: "visible", timeout: W.timeout });
    await expect.poll(() => a.locator(".row[data-conversation]", { hasText: "Bob" }).locator("[data-test=unread]").count(), W).toBe(0);
  });

  it("an image message goes from upload to display on both sides", async () => {
    const a = alice.page;
    const b = bob.page;
    await openFriendChat(a, "Bob");
    await a.locator("input[type=file][id^=image-]").setInputFiles({ name: "dot.png", mimeType: "image/png", buffer: pngBytes() });
    for (const page of [a, b]) {
      const img = page.locator(".msg:not(.pending) img.msg-image").last();
      await img.first().waitFor({ state: "visible", timeout: W.timeout });
      await expect.poll(() => img.getAttribute("src"), W).toMatch(/\/v1\/uploads\/[0-9a-f]{32}$/);
      await expect.poll(() => img.evaluate((el) => (el as HTMLImageElement).naturalWidth), W).toBe(24);
    }
  });

  it("after a network drop everything missed arrives, once", async () => {
    // Bob's websocket goes through a route the test can cut, like a network that drops.
    const b2 = await bob.context.newPage();
    trap(b2, bob.errors);
    let cut = false;
    const live: { close: () => Promise<void> }[] = [];
    await b2.routeWebSocket(/\/sub$/, (ws) => {
      if (cut) {
        void ws.close().catch(() => undefined);
        return;
      }
      ws.connectToServer();
      live.push(ws);
    });
    await b2.goto("/");
    await connected(b2);
    await openFriendChat(b2, "Alice");
    const before = await shownTexts(b2);
    cut = true;
    await Promise.all(live.splice(0).map((ws) => ws.close().catch(() => undefined)));
    await b2.locator(".conn-banner").first().waitFor({ state: "visible", timeout: W.timeout });
    const missed = ["while you were away 1", "while you were away 2", "while you were away 3"];
    for (const t of missed) await send(alice.page, t);
    // Bob types while offline, and the HTTP fallback cannot get through either: the send fails, in words.
    await b2.route("**/v1/conversations/*/messages", (r) => (r.request().method() === "POST" ? r.abort() : r.continue()));
    await send(b2, "typed while offline");
    const failed = b2.locator(".msg.pending [data-state=failed]");
    await expect.poll(() => textOf(failed), W).toContain("the server cannot be reached");
    // The aborted request is the one console error this step expects.
    const expected = bob.errors.filter((e) => e.includes("net::ERR_FAILED"));
    expect(expected.length).toBeGreaterThan(0);
    bob.errors.splice(0, bob.errors.length, ...bob.errors.filter((e) => !e.includes("net::ERR_FAILED")));
    await b2.unroute("**/v1/conversations/*/messages");
    cut = false;
    await connected(b2);
    await expect.poll(() => shownTexts(b2), W).toEqual([...before, ...missed]);
    // Retry sends it with the same client_msg_id: it shows once, as sent, on both sides.
    await b2.locator(".msg.pending").getByRole("button", { name: "Retry" }).click();
    await expect.poll(() => shownTexts(b2), W).toEqual([...before, ...missed, "typed while offline"]);
    await expect.poll(() => b2.locator(".msg.pending").count(), W).toBe(0);
    await expect.poll(() => textOf(alice.page.locator(".msg.theirs .msg-text").last()), W).toBe("typed while offline");
    await b2.close();
  });

  it("older history pages in on scroll-up, each message once, in order", async () => {
    const token = await alice.page.evaluate(() => localStorage.getItem("imcloud.token"));
    const conv = await (await fetch(`${server.http}/v1/conversations`, { headers: { Authorization: `Bearer ${token}` } })).json();
    const cid = conv.conversations[0].id as string;
    for (let i = 1; i <= 40; i++) {
      // Faster than the per-user send limit (IMCLOUD_IM_SENDS_PER_SEC): wait as each 429 says, as a client would.
      for (;;) {
        const r = await fetch(`${server.http}/v1/conversations/${cid}/messages`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ client_msg_id: `bulk-${i}`, content: `bulk ${i}` }),
        });
        if (r.status === 429) {
          await new Promise((done) => setTimeout(done, 1000 * Number(r.headers.get("retry-after") ?? "1")));
          continue;
        }
        expect(r.status).toBe(201);
        break;
      }
    }
    const last = (await (await fetch(`${server.http}/v1/conversations`, { headers: { Authorization: `Bearer ${token}` } })).json()).conversations[0]
      .last_seq as number;
    // A fresh page: the chat opens on the newest 30.
    const b3 = await bob.context.newPage();
    trap(b3, bob.errors);
    await b3.goto("/");
    await connected(b3);
    await openFriendChat(b3, "Alice");
    const seqs = () => b3.locator(".messages .msg[data-seq]").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-seq"))));
    await expect.poll(async () => (await seqs()).length, W).toBe(30);
    await b3.getByRole("button", { name: "Load older messages" }).first().waitFor({ state: "visible", timeout: W.timeout });
    for (let i = 0; i < 5 && (await b3.getByText("Start of the conversation").count()) === 0; i++) {
      await b3.locator(".messages").evaluate((el) => el.scrollTo(0, 0));
      await b3.waitForTimeout(300);
    }
    await expect.poll(seqs, W).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    await b3.close();
  });

  it("an edit, a reaction and a recall show on the message they change, never as messages of their own", async () => {
    const token = await alice.page.evaluate(() => localStorage.getItem("imcloud.token"));
    const auth = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
    const cid = (await (await fetch(`${server.http}/v1/conversations`, { headers: auth })).json()).conversations[0].id as string;
    const b = bob.page;
    await openFriendChat(b, "Alice");
    await send(alice.page, "see you at 9");
    const bubble = b.locator(".msg.theirs", { hasText: "see you at 9" }).last();
    await bubble.waitFor({ state: "visible", timeout: W.timeout });
    const seq = Number(await bubble.getAttribute("data-seq"));
    const bubbles = () => b.locator(".messages .msg[data-seq]").count();
    const before = await bubbles();
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${server.http}/v1/conversations/${cid}/messages/${seq}${path}`, {
        method,
        headers: auth,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(r.status, `${method} ${path}`).toBe(200);
    };
    await call("PATCH", "", { content: "see you at 10" });
    const edited = b.locator(`.msg[data-seq="${seq}"]`);
    await expect.poll(() => textOf(edited.locator(".msg-text")), W).toBe("see you at 10");
    await expect.poll(() => edited.locator(".edited").count(), W).toBe(1);
    await call("PUT", `/reactions/${encodeURIComponent("👍")}`);
    await expect.poll(() => textOf(edited.locator(".reaction")), W).toBe("👍 1");
    await call("DELETE", "");
    await expect.poll(() => textOf(edited.locator(".msg-text")), W).toBe("This message was withdrawn.");
    expect(await bubbles()).toBe(before);
  });

  it("a third person joins a group by request; the owner approves, mutes and kicks, and each step shows on their screen", async () => {
    const carol = await newPerson(browser, server, "Carol");
    people.push(carol);
    await register(carol);
    const a = alice.page;
    const c = carol.page;

    // Carol sets a signature and an avatar.
    await c.getByRole("button", { name: "Profile" }).click();
    await c.getByLabel("Signature").fill("Walking is life");
    await c.locator("#profile-avatar").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: pngBytes() });
    await c.locator("#profile .picker img").first().waitFor({ state: "visible", timeout: W.timeout });
    await c.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => textOf(c.locator(".me .muted")), W).toBe("Walking is life");
    await c.locator(".me img").first().waitFor({ state: "visible", timeout: W.timeout });

    await a.getByRole("button", { name: "New group" }).click();
    await a.getByLabel("Name", { exact: true }).fill("Hiking club");
    await a.getByLabel("Description").fill("Weekend walks");
    await a.locator("#create-avatar").setInputFiles({ name: "g.png", mimeType: "image/png", buffer: pngBytes() });
    await a.locator("#create .picker img").first().waitFor({ state: "visible", timeout: W.timeout });
    await a.getByLabel("Most members").fill("50");
    await a.getByLabel("Joining needs approval").check();
    await a.getByRole("button", { name: "Create", exact: true }).click();
    await a.getByRole("tab", { name: /Groups/ }).click();
    await a.locator(".row", { hasText: "Hiking club" }).first().waitFor({ state: "visible", timeout: W.timeout });

    // Carol asks to join.
    await c.getByRole("button", { name: "Find" }).click();
    await c.getByLabel("Groups").check();
    await c.getByLabel("Group number or name").fill("Hiking");
    await c.getByRole("button", { name: "Search" }).click();
    await c.getByLabel("Note").fill("I love hiking");
    await c.getByRole("button", { name: "Ask to join" }).click();
    await c.getByText("Request sent", { exact: true }).first().waitFor({ state: "visible", timeout: W.timeout });
    await c.getByRole("button", { name: "Close" }).click();

    // Alice approves it from her message box; Carol's screen shows the group and the result.
    await expect.poll(() => textOf(a.locator("[data-test=box-unread]")), W).toBe("1");
    await a.locator("[data-test=open-box]").click();
    const req = a.locator(".box-item[data-kind=group_join_request]");
    await expect.poll(() => textOf(req), W).toContain("Carol asks to join Hiking club");
    await req.getByRole("button", { name: "Approve" }).click();
    await expect.poll(() => textOf(req.locator("[data-test=request-status]")), W).toBe("Approved");
    await a.getByRole("button", { name: "Close" }).click();
    await c.getByRole("tab", { name: /Groups/ }).click();
    await c.locator(".row", { hasText: "Hiking club" }).first().waitFor({ state: "visible", timeout: W.timeout });
    await expect.poll(() => textOf(c.locator("[data-test=box-unread]")), W).toBe("1");
    await c.locator("[data-test=open-box]").click();
    await expect.poll(() => textOf(c.locator(".box-item[data-kind=group_join_result]")), W).toContain("was approved");
    await c.getByRole("button", { name: "Close" }).click();

    // Both in the group chat; Carol can speak.
    await c.locator(".row", { hasText: "Hiking club" }).click();
    await a.locator(".row", { hasText: "Hiking club" }).click();
    await send(c, "hello everyone");
    await expect.poll(() => textOf(a.locator(".msg.theirs .msg-text").last()), W).toBe("hello everyone");

    // Alice makes Carol an admin, then a member again; the member list follows.
    await a.getByRole("button", { name: "Manage" }).click();
    const row = a.locator("[data-member]", { hasText: "Carol" });
    await row.getByRole("button", { name: "Make admin" }).click();
    await expect.poll(() => textOf(row.locator("[data-test=member-state]")), W).toBe("admin");
    await row.getByRole("button", { name: "Make member" }).click();
    await expect.poll(() => textOf(row.locator("[data-test=member-state]")), W).toBe("member");

    // Alice mutes Carol: Carol's window says so and her composer is off.
    await row.getByLabel(/Mute Carol for/).selectOption({ label: "1 hour" });
    await row.getByRole("button", { name: "Mute", exact: true }).click();
    await expect.poll(() => textOf(row.locator("[data-test=member-state]")), W).toContain("muted until");
    await expect.poll(() => textOf(c.locator("[data-test=muted-banner]")), W).toContain("You are muted in this group until");
    await expect.poll(() => c.getByLabel("Message", { exact: true }).isDisabled(), W).toBe(true);
    expect(await accessibilityProblems(a)).toEqual([]);

    // Alice removes Carol: the group leaves Carol's list, her window and her box say why.
    await row.getByRole("button", { name: "Remove" }).click();
    await row.getByRole("button", { name: "Confirm remove" }).click();
    await expect.poll(() => a.locator("[data-member]", { hasText: "Carol" }).count(), W).toBe(0);
    await expect.poll(() => textOf(c.locator("[data-test=removed-banner]")), W).toBe("You were removed from this group.");
    await c.getByRole("button", { name: "Back to the lists" }).click();
    await c.getByRole("tab", { name: /Groups/ }).click();
    await expect.poll(() => c.locator(".row", { hasText: "Hiking club" }).count(), W).toBe(0);
    await expect.poll(() => textOf(c.locator("[data-test=box-unread]")), W).toBe("1");

    // Alice dismisses the group: it leaves her list.
    await a.getByRole("button", { name: "Dismiss the group" }).click();
    await a.getByRole("button", { name: "Confirm: dismiss for everyone" }).click();
    await a.getByRole("button", { name: "Back to the lists" }).click();
    await expect.poll(() => a.locator(".row", { hasText: "Hiking club" }).count(), W).toBe(0);
  });

  it("the message box: a refused friend request and a system notice", async () => {
    const carol = people.find((p) => p.name === "Carol")!;
    const c = carol.page;
    const b = bob.page;
    await c.locator("[data-test=open-box]").click();
    await expect.poll(() => textOf(c.locator(".box-item[data-kind=group_notice]")), W).toContain("You were removed from the group Hiking club");
    await c.getByRole("button", { name: "Close" }).click();
    await c.getByRole("button", { name: "Find" }).click();
    await c.getByLabel("Account number, email or nickname").fill(bob.email);
    await c.getByRole("button", { name: "Search" }).click();
    await c.getByRole("button", { name: "Add friend" }).click();
    await c.getByRole("button", { name: "Send request" }).click();
    await c.getByText("Request sent", { exact: true }).first().waitFor({ state: "visible", timeout: W.timeout });
    await c.getByRole("button", { name: "Close" }).click();
    await b.locator("[data-test=open-box]").click();
    const item = b.locator(".box-item[data-kind=friend_request]", { hasText: "Carol" });
    await item.getByRole("button", { name: "Refuse" }).click();
    await expect.poll(() => textOf(item.locator("[data-test=request-status]")), W).toBe("Refused");
    await b.getByRole("button", { name: "Close" }).click();
    await expect.poll(() => textOf(c.locator("[data-test=box-unread]")), W).toBe("1");
    // A backend's system notice.
    const token = await c.evaluate(() => localStorage.getItem("imcloud.token"));
    const me = (await (await fetch(`${server.http}/v1/me`, { headers: { Authorization: `Bearer ${token}` } })).json()) as { id: number };
    const r = await fetch(`${server.http}/v1/notices`, {
      method: "POST",
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ user_ids: [me.id], title: "Maintenance", content: "Tonight at 22:00" }),
    });
    expect(r.status).toBe(200);
    await c.locator("[data-test=open-box]").click();
    await expect.poll(() => textOf(c.locator(".box-item[data-kind=friend_request_result]")), W).toContain("Bob refused your friend request");
    await expect.poll(() => textOf(c.locator(".box-item[data-kind=system] strong")), W).toBe("Maintenance");
    await expect.poll(() => textOf(c.locator(".box-item[data-kind=system]")), W).toContain("Tonight at 22:00");
    await c.getByRole("button", { name: "Close" }).click();
  });

  it("works at phone width: the panel, then the chat full screen with a way back", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: server.http });
    const page = await phone.newPage();
    const errors: string[] = [];
    trap(page, errors);
    await page.goto("/");
    await page.getByLabel("Email").fill(bob.email);
    await page.getByLabel("Password").fill(bob.password);
    await page.getByRole("button", { name: "Log in" }).click();
    await connected(page);
    await page.locator(".panel").first().waitFor({ state: "visible", timeout: W.timeout });
    await openFriendChat(page, "Alice");
    await page.locator(".panel").first().waitFor({ state: "hidden", timeout: W.timeout });
    await page.locator(".messages").first().waitFor({ state: "visible", timeout: W.timeout });
    await shot(page, "phone-chat");
    await page.getByRole("button", { name: "Back to the lists" }).click();
    await page.locator(".panel").first().waitFor({ state: "visible", timeout: W.timeout });
    // Keyboard: the tabs move with the arrow keys.
    await page.getByRole("tab", { name: /Friends/ }).focus();
    await page.keyboard.press("ArrowRight");
    await expect.poll(() => page.getByRole("tab", { name: /Groups/ }).evaluate((el) => el === document.activeElement), W).toBe(true);
    await expect.poll(() => page.getByRole("tab", { name: /Groups/ }).getAttribute("aria-selected"), W).toBe("true");
    expect(await accessibilityProblems(page)).toEqual([]);
    await phone.close();
    expect(errors).toEqual([]);
  });

  it("a presence dot turns grey when the other person's tab closes", async () => {
    const a = alice.page;
    await a.getByRole("tab", { name: /Friends/ }).click();
    const head = a.getByRole("button", { name: /My friends/ });
    await head.click();
    await expect.poll(() => head.getAttribute("aria-expanded"), W).toBe("false");
    await expect.poll(() => a.locator(".row", { hasText: "Bob" }).count(), W).toBe(0);
    await head.click();
    await expect.poll(() => head.getAttribute("aria-expanded"), W).toBe("true");
    const dot = a.locator(".row", { hasText: "Bob" }).locator(".dot");
    await expect.poll(() => dot.getAttribute("data-presence"), W).toBe("online");
    await bob.context.close();
    await expect.poll(() => dot.getAttribute("data-presence"), W).toBe("offline");
  });
});
