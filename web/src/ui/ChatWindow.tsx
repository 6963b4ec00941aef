//! A private or group chat window: the messages in seq order (older ones paged in on scroll-up or with
//! the button at the top), each of mine with its send state (sending, sent, read, or failed with a
//! retry button), image messages, and the composer. In a group it shows a mute or removal banner and
//! opens group management.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Message } from "@imcloud/client";
import { Avatar } from "./Avatar";
import { useStore } from "./context";
import { time, until } from "./format";
import { isChange, type PendingMessage } from "../store";

export function ChatWindow({ cid }: { cid: string }) {
  const store = useStore();
  const s = store.state;
  const me = s.me!;
  const log = store.log(cid);
  const isGroup = cid.startsWith("g-");
  const groupId = isGroup ? Number(cid.slice(2)) : 0;
  const group = isGroup ? store.group(groupId) : undefined;
  const removed = isGroup ? s.removed.get(groupId) : undefined;
  const peer = isGroup ? undefined : store.peerOf(cid);
  const peerOnline = peer !== undefined ? (store.friendOf(peer)?.online ?? store.conversation(cid)?.peer?.online ?? false) : false;
  const mutedUntil = isGroup ? (s.myMute.get(groupId) ?? 0) : 0;
  const muted = mutedUntil > Date.now();
  const allMuted = !!group?.all_muted && group.my_role === "member";
  // Edits, recalls and reactions show on the message they change, not as bubbles of their own.
  const messages = [...log.bySeq.values()].filter((m) => !isChange(m)).sort((a, b) => a.seq - b.seq);
  const title = store.title(cid);

  const listRef = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  const firstSeq = useRef<number | undefined>(undefined);
  const heightBefore = useRef(0);
  const [text, setText] = useState("");
  const fileRef = useRef<HTMLInputElement>(null);

  // Keep the view at the bottom for new messages, and in place when older ones are added above.
  useLayoutEffect(() => {
    const el = listRef.current;
    if (!el) return;
    const first = messages[0]?.seq;
    if (firstSeq.current !== undefined && first !== undefined && first < firstSeq.current) {
      el.scrollTop += el.scrollHeight - heightBefore.current;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    firstSeq.current = first;
    heightBefore.current = el.scrollHeight;
  });

  useEffect(() => {
    store.markRead(cid);
  }, [cid, messages.length]);

  const onScroll = () => {
    const el = listRef.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    heightBefore.current = el.scrollHeight;
    if (el.scrollTop < 40 && log.hasMoreOlder && !log.loadingOlder && log.loadedNewest) void store.loadOlder(cid);
  };

  const send = (e: Event) => {
    e.preventDefault();
    atBottom.current = true;
    store.sendText(cid, text);
    setText("");
  };

  const canPost = !removed && !muted && !allMuted;
  return (
    <section class="chat" aria-label={`Chat with ${title}`} data-chat={cid}>
      <header class="chat-head">
        <button type="button" class="back icon" aria-label="Back to the lists" onClick={() => store.closeChat()}>
          ‹
        </button>
        <Avatar name={title} src={isGroup ? group?.avatar : store.friendOf(peer!)?.user.avatar} online={isGroup ? undefined : peerOnline} />
        <div class="chat-title">
          <h2>{title}</h2>
          <span class="muted small">{isGroup ? (group ? `${group.member_count} members` : "") : peerOnline ? "online" : "offline"}</span>
        </div>
        {isGroup && group && !removed && (
          <button type="button" onClick={() => store.openDialog({ kind: "manage", groupId })}>
            {group.my_role === "member" ? "Members" : "Manage"}
          </button>
        )}
      </header>
      {removed && (
        <p class="banner" role="status" data-test="removed-banner">
          {removed}
        </p>
      )}
      {!removed && muted && (
        <p class="banner" role="status" data-test="muted-banner">
          You are muted in this group until {until(mutedUntil)}.
        </p>
      )}
      {!removed && !muted && allMuted && (
        <p class="banner" role="status">
          Only the owner and admins can speak while the whole group is muted.
        </p>
      )}
      <ol class="messages" ref={listRef} onScroll={onScroll} aria-label="Messages" aria-live="polite">
        {log.loadedNewest && log.hasMoreOlder && (
          <li class="older">
            <button type="button" class="link" disabled={log.loadingOlder} onClick={() => void store.loadOlder(cid)}>
              {log.loadingOlder ? "Loading…" : "Load older messages"}
            </button>
          </li>
        )}
        {log.loadedNewest && !log.hasMoreOlder && messages.length > 0 && <li class="older muted small">Start of the conversation</li>}
        {messages.map((m) => (
          <Bubble key={m.id} m={m} mine={m.sender_id === me.id} isGroup={isGroup} read={!isGroup && m.seq <= log.peerReadSeq} />
        ))}
        {log.pending.map((p) => (
          <PendingBubble key={p.clientMsgId} p={p} onRetry={() => store.retry(cid, p.clientMsgId)} />
        ))}
      </ol>
      <form class="composer" onSubmit={send}>
        <label class="visually-hidden" for={`compose-${cid}`}>
          Message
        </label>
        <textarea
          id={`compose-${cid}`}
          rows={2}
          value={text}
          disabled={!canPost}
          placeholder={canPost ? "Write a message" : "You cannot send messages here"}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) send(e);
          }}
        />
        <input
          ref={fileRef}
          id={`image-${cid}`}
          class="visually-hidden"
          type="file"
          accept="image/png,image/jpeg,image/gif,image/webp"
          disabled={!canPost}
          onChange={(e) => {
            const f = e.currentTarget.files?.[0];
            if (f) {
              atBottom.current = true;
              store.sendImage(cid, f);
            }
            e.currentTarget.value = "";
          }}
        />
        <label for={`image-${cid}`} class={`button${canPost ? "" : " disabled"}`}>
          Image
        </label>
        <button type="submit" class="primary" disabled={!canPost || !text.trim()}>
          Send
        </button>
      </form>
    </section>
  );
}

function Content({ type, content, preview }: { type: string; content: string; preview?: string }) {
  const store = useStore();
  if (type === "image") {
    const src = preview ?? store.api.uploadUrl(content);
    return <img class="msg-image" src={src} alt="image message" loading="lazy" />;
  }
  if (type === "file") {
    return (
      <a href={store.api.uploadUrl(content)} target="_blank" rel="noreferrer">
        file
      </a>
    );
  }
  return <span class="msg-text">{content}</span>;
}

function Bubble({ m, mine, isGroup, read }: { m: Message; mine: boolean; isGroup: boolean; read: boolean }) {
  const store = useStore();
  const name = store.nameOf(m.sender_id);
  return (
    <li class={`msg ${mine ? "mine" : "theirs"}`} data-seq={m.seq} data-id={m.id}>
      {!mine && <Avatar name={name} size={32} />}
      <div class="msg-body">
        {isGroup && !mine && <span class="msg-name small">{name}</span>}
        <div class="bubble">
          {m.recalled ? <span class="msg-text muted">This message was withdrawn.</span> : <Content type={m.type} content={m.content} />}
        </div>
        {!m.recalled && m.reactions && m.reactions.length > 0 && (
          <span class="msg-reactions small" aria-label="Reactions">
            {m.reactions.map((r) => (
              <span key={r.emoji} class={r.me ? "reaction mine" : "reaction"}>
                {r.emoji} {r.count}
              </span>
            ))}
          </span>
        )}
        <span class="msg-meta small">
          <time dateTime={new Date(m.created_at).toISOString()}>{time(m.created_at)}</time>
          {m.edited_at != null && !m.recalled && <span class="edited"> · edited</span>}
          {mine && (
            <span class="state" data-state={read ? "read" : "sent"}>
              {read ? " · read" : " · sent"}
            </span>
          )}
        </span>
      </div>
    </li>
  );
}

function PendingBubble({ p, onRetry }: { p: PendingMessage; onRetry: () => void }) {
  return (
    <li class="msg mine pending" data-client-msg-id={p.clientMsgId}>
      <div class="msg-body">
        <div class="bubble">{p.type === "image" ? <Content type="image" content={p.content} preview={p.preview} /> : <span class="msg-text">{p.content}</span>}</div>
        <span class="msg-meta small">
          {p.state === "sending" ? (
            <span class="state" data-state="sending">
              sending…
            </span>
          ) : (
            <>
              <span class="state failed" data-state="failed" role="alert">
                failed: {p.error}
              </span>{" "}
              <button type="button" class="link" onClick={onRetry}>
                Retry
              </button>
            </>
          )}
        </span>
      </div>
    </li>
  );
}
