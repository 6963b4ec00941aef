// The sync merge: every message exactly once and in seq order, whatever mix of history fetches and live
// events (duplicated, reordered, racing the fetch) delivers it. The source is an in-memory message
// store that answers `after_seq` queries as the server does (ascending pages with has_more).
import { describe, expect, it } from "vitest";
import { type HistoryPage, MessageSync, type SyncMessage } from "../../src/sync.js";

interface Msg extends SyncMessage {
  text: string;
}

class Store {
  readonly convs = new Map<string, Msg[]>();
  /** Seqs at or below this are hidden from the user (a group joined late). */
  minSeq = new Map<string, number>();
  calls = 0;
  fail = false;
  /** Runs while a fetch is "in flight", after the store was read. */
  duringFetch: (() => void) | null = null;
  private nextId = 1;

  add(cid: string, n = 1): Msg[] {
    const list = this.convs.get(cid) ?? [];
    this.convs.set(cid, list);
    const out: Msg[] = [];
    for (let i = 0; i < n; i++) {
      const m = { id: this.nextId++, conversation_id: cid, seq: list.length + 1, text: `m${list.length + 1}` };
      list.push(m);
      out.push(m);
    }
    return out;
  }

  async after(cid: string, afterSeq: number, limit: number): Promise<HistoryPage<Msg>> {
    this.calls += 1;
    await Promise.resolve();
    if (this.fail) throw new Error("store unavailable");
    const all = (this.convs.get(cid) ?? []).filter((m) => m.seq > Math.max(afterSeq, this.minSeq.get(cid) ?? 0));
    const page = all.slice(0, limit);
    const hook = this.duringFetch;
    this.duringFetch = null;
    hook?.();
    await Promise.resolve();
    return { messages: page, has_more: all.length > limit, last_seq: this.convs.get(cid)?.length ?? 0 };
  }

  list() {
    return [...this.convs].map(([id, l]) => ({ id, last_seq: l.length }));
  }
}

function setup(backfill = 0) {
  const store = new Store();
  const got: { seq: number; id: number; cid: string; live: boolean }[] = [];
  const errors: unknown[] = [];
  const sync = new MessageSync<Msg>(store, {
    backfill,
    pageSize: 200,
    deliver: (m, live) => got.push({ seq: m.seq, id: m.id, cid: m.conversation_id, live }),
    onError: (_cid, e) => errors.push(e),
  });
  const seqs = (cid = "u-1-2") => got.filter((g) => g.cid === cid).map((g) => g.seq);
  return { store, sync, got, seqs, errors };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("MessageSync", () => {
  it("delivers contiguous live messages at once, in order, once", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    const [a, b] = store.add("u-1-2", 2);
    sync.live(a!);
    sync.live(b!);
    sync.live(a!);
    sync.live(b!);
    expect(seqs()).toEqual([1, 2]);
    expect(store.calls).toBe(0);
  });

  it("fills a gap from the store, then drains the buffered live messages in order", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    const ms = store.add("u-1-2", 5);
    sync.live(ms[3]!);
    sync.live(ms[4]!);
    await settle();
    await settle();
    expect(seqs()).toEqual([1, 2, 3, 4, 5]);
  });

  it("orders concurrent sends whose events arrive out of seq order", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    const [a, b] = store.add("u-1-2", 2);
    sync.live(b!);
    sync.live(a!);
    for (let i = 0; i < 5; i++) await settle();
    expect(seqs()).toEqual([1, 2]);
  });

  it("after a reconnect syncs from the last seq held, and drops the live copies", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    for (const m of store.add("u-1-2", 3)) sync.live(m);
    // offline: 4 more arrive
    const missed = store.add("u-1-2", 4);
    await sync.sync(store.list());
    expect(seqs()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // the live copies arrive late, then a new one
    for (const m of missed) sync.live(m);
    sync.live(store.add("u-1-2")[0]!);
    expect(seqs()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("pages through a long gap", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    store.add("u-1-2", 450);
    await sync.sync(store.list());
    expect(seqs()).toEqual(Array.from({ length: 450 }, (_, i) => i + 1));
    expect(store.calls).toBe(3);
  });

  it("backfills the newest messages of a conversation seen for the first time", async () => {
    const { store, sync, seqs } = setup(2);
    store.add("u-1-2", 10);
    await sync.sync(store.list());
    expect(seqs()).toEqual([9, 10]);
  });

  it("starts a conversation first heard of live from what the user may see (a group joined late)", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([]);
    store.add("g-7", 10);
    store.minSeq.set("g-7", 10);
    const [m11, m12] = store.add("g-7", 2);
    sync.live(m12!);
    sync.live(m11!);
    for (let i = 0; i < 5; i++) await settle();
    expect(seqs("g-7")).toEqual([11, 12]);
  });

  it("keeps the buffer when a fetch fails and recovers on the next sync", async () => {
    const { store, sync, seqs, errors } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    const ms = store.add("u-1-2", 3);
    store.fail = true;
    sync.live(ms[2]!);
    for (let i = 0; i < 5; i++) await settle();
    expect(seqs()).toEqual([]);
    expect(errors.length).toBe(1);
    store.fail = false;
    await sync.sync(store.list());
    expect(seqs()).toEqual([1, 2, 3]);
  });

  it("delivers a live message that raced the fetch (stored after the store was read)", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "u-1-2", last_seq: 0 }]);
    const first = store.add("u-1-2", 2);
    store.duringFetch = () => {
      const [late] = store.add("u-1-2");
      sync.live(late!);
    };
    sync.live(first[1]!);
    for (let i = 0; i < 10; i++) await settle();
    expect(seqs()).toEqual([1, 2, 3]);
  });

  it("forgets a conversation and starts it anew", async () => {
    const { store, sync, seqs } = setup();
    await sync.sync([{ id: "g-1", last_seq: 0 }]);
    for (const m of store.add("g-1", 2)) sync.live(m);
    sync.forget("g-1");
    expect(sync.held("g-1")).toBeUndefined();
    store.minSeq.set("g-1", 2);
    sync.live(store.add("g-1")[0]!);
    for (let i = 0; i < 5; i++) await settle();
    expect(seqs("g-1")).toEqual([1, 2, 3]);
  });
});
