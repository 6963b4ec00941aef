//! Exactly-once, in-order message delivery across reconnects: the merge of the sync (history fetched
//! after the last seq held) with the live `message` events (op 1000).
//!
//! Invariants, per conversation:
//! - `held` is the highest seq delivered; every message delivered has seq `held + 1` at that moment, so
//!   an app sees each message once, in seq order, with no gap (a message hidden from this user, e.g.
//!   before a group join, is simply never returned by the server and never waited for: the server's
//!   `after_seq` answer is the truth about what follows `held`).
//! - A live message at or below `held`, or with an id already delivered, is dropped (a duplicate).
//! - A live message above `held + 1` reveals a gap: it is buffered and the gap is fetched
//!   (`after_seq = held`, page by page until `has_more` is false); then the buffer drains in seq order.
//! - At most one fetch per conversation runs at a time; a failed fetch keeps the buffer and is retried
//!   by the next `sync()` or gap.
//! - The buffer holds at most `maxBuffered` messages per conversation; beyond that the newest are dropped
//!   from the buffer (the fetch returns them anyway, since it reads from the store).

/** The fields of a message the merge needs. */
export interface SyncMessage {
  id: number;
  conversation_id: string;
  seq: number;
}

export interface HistoryPage<M> {
  messages: M[];
  has_more: boolean;
  last_seq: number;
}

export interface SyncSource<M> {
  /** Messages with seq > `afterSeq`, ascending, at most `limit`. */
  after(conversationId: string, afterSeq: number, limit: number): Promise<HistoryPage<M>>;
}

export interface SyncOptions<M extends SyncMessage> {
  /**
   * For a conversation seen for the first time in `sync()`: how many of its newest messages to deliver
   * (0 = none, start from its current last seq). Conversations first seen through a live message are
   * always fetched from the start of what the user may see.
   */
  backfill?: number;
  /** Page size of the fetches (the server allows 1 to 200). */
  pageSize?: number;
  maxBuffered?: number;
  /** Called once per message, in order. */
  deliver: (message: M, live: boolean) => void;
  /** A fetch failed (it is retried later); default: ignored. */
  onError?: (conversationId: string, err: unknown) => void;
}

/** Most recently delivered message ids remembered per conversation (a second line of defence after seq). */
const RECENT_IDS = 512;

/** Fetch rounds for one gap before buffered messages are delivered across it anyway. */
const MAX_ROUNDS = 5;

interface ConvState<M> {
  held: number;
  buffer: Map<number, M>;
  recent: Set<number>;
  fetching: Promise<void> | null;
}

export class MessageSync<M extends SyncMessage> {
  private readonly source: SyncSource<M>;
  private readonly opts: SyncOptions<M>;
  private readonly convs = new Map<string, ConvState<M>>();

  constructor(source: SyncSource<M>, opts: SyncOptions<M>) {
    this.source = source;
    this.opts = opts;
  }

  /** The highest seq delivered for a conversation, if it is known. */
  held(conversationId: string): number | undefined {
    return this.convs.get(conversationId)?.held;
  }

  /** Sets what the app already holds (e.g. restored from storage), before the first sync. */
  restore(held: Record<string, number>): void {
    for (const [cid, seq] of Object.entries(held)) this.state(cid, seq);
  }

  /** Every conversation's held seq (to persist). */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.convs].map(([cid, c]) => [cid, c.held]));
  }

  /**
   * After (re)connecting: given each conversation's current `last_seq`, fetches what lies beyond the seq
   * held and delivers it. Resolves when every conversation has been caught up (or its fetch failed).
   */
  async sync(conversations: ReadonlyArray<{ id: string; last_seq: number }>): Promise<void> {
    const backfill = this.opts.backfill ?? 0;
    const work: Promise<void>[] = [];
    for (const c of conversations) {
      const known = this.convs.get(c.id);
      const st = known ?? this.state(c.id, Math.max(0, c.last_seq - backfill));
      if (c.last_seq > st.held || st.buffer.size > 0) work.push(this.fill(c.id));
    }
    await Promise.all(work);
  }

  /** A live `message` event. */
  live(m: M): void {
    let st = this.convs.get(m.conversation_id);
    if (!st) {
      // First heard of live: everything the user may see of it is new (the server starts a joiner
      // after the join), so fetch from the start.
      st = this.state(m.conversation_id, 0);
    }
    if (m.seq <= st.held || st.recent.has(m.id)) return;
    if (m.seq === st.held + 1 && !st.fetching) {
      this.deliver(st, m, true);
      this.drain(st);
      return;
    }
    if (st.buffer.size < (this.opts.maxBuffered ?? 1000)) st.buffer.set(m.seq, m);
    void this.fill(m.conversation_id);
  }

  /** Forgets a conversation (left the group, deleted): later messages start it anew. */
  forget(conversationId: string): void {
    this.convs.delete(conversationId);
  }

  private state(cid: string, held: number): ConvState<M> {
    let st = this.convs.get(cid);
    if (!st) {
      st = { held, buffer: new Map(), recent: new Set(), fetching: null };
      this.convs.set(cid, st);
    }
    return st;
  }

  /** Fetches everything after `held`, then drains the buffer. One fetch at a time per conversation. */
  private fill(cid: string): Promise<void> {
    const st = this.convs.get(cid);
    if (!st) return Promise.resolve();
    if (st.fetching) return st.fetching;
    const pageSize = this.opts.pageSize ?? 200;
    const run = async () => {
      try {
        for (let round = 1; ; round++) {
          for (;;) {
            const page = await this.source.after(cid, st.held, pageSize);
            for (const m of page.messages) {
              if (m.seq > st.held && !st.recent.has(m.id)) this.deliver(st, m, st.buffer.has(m.seq));
              st.buffer.delete(m.seq);
            }
            if (!page.has_more || page.messages.length === 0) break;
          }
          for (const seq of [...st.buffer.keys()]) if (seq <= st.held) st.buffer.delete(seq);
          this.drain(st);
          if (st.buffer.size === 0) break;
          // Still a gap: live messages newer than what the store returned when it was read. Read again;
          // after MAX_ROUNDS the store's answer stands and the buffer is delivered across the gap.
          if (round >= MAX_ROUNDS) {
            for (const seq of [...st.buffer.keys()].sort((a, b) => a - b)) {
              const m = st.buffer.get(seq)!;
              st.buffer.delete(seq);
              if (seq > st.held) this.deliver(st, m, true);
            }
            break;
          }
        }
      } catch (err) {
        this.opts.onError?.(cid, err);
      } finally {
        st.fetching = null;
      }
    };
    st.fetching = run();
    return st.fetching;
  }

  private drain(st: ConvState<M>): void {
    for (;;) {
      const next = st.buffer.get(st.held + 1);
      if (!next) return;
      st.buffer.delete(next.seq);
      this.deliver(st, next, true);
    }
  }

  private deliver(st: ConvState<M>, m: M, live: boolean): void {
    st.held = m.seq;
    st.recent.add(m.id);
    if (st.recent.size > RECENT_IDS) {
      const oldest = st.recent.values().next().value;
      if (oldest !== undefined) st.recent.delete(oldest);
    }
    this.opts.deliver(m, live);
  }
}
