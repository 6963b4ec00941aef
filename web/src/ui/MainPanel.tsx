//! LayIM's main panel: who I am and the tool buttons (message box with its unread count, find and add,
//! create a group, profile, log out), then three tabs: friends by friend group (collapsible, presence
//! dots that change live), my groups, and the conversations with unread badges and last messages.

import type { Conversation } from "@imcloud/client";
import { Avatar } from "./Avatar";
import { useStore } from "./context";
import { preview, time } from "./format";
import { privateCid, type Tab } from "../store";

export function MainPanel() {
  const store = useStore();
  const s = store.state;
  const me = s.me;
  if (!me) return null;
  const tabs: [Tab, string][] = [
    ["friends", "Friends"],
    ["groups", "Groups"],
    ["chats", "Chats"],
  ];
  const totalUnread = s.conversations.reduce((n, c) => n + c.unread, 0);
  return (
    <section class="panel" aria-label="Main panel">
      <header class="me">
        <Avatar name={me.nickname} src={me.avatar} size={48} />
        <div class="me-text">
          <strong class="me-name">{me.nickname}</strong>
          <span class="muted">{me.signature || `No. ${me.account_no}`}</span>
        </div>
      </header>
      <nav class="tools" aria-label="Tools">
        <button
          type="button"
          class="tool"
          data-test="open-box"
          aria-label={`Message box${s.box.unread ? `, ${s.box.unread} unread` : ""}`}
          onClick={() => store.openDialog({ kind: "box" })}
        >
          Box{s.box.unread > 0 && <span class="badge" data-test="box-unread">{s.box.unread}</span>}
        </button>
        <button type="button" class="tool" onClick={() => store.openDialog({ kind: "find" })}>
          Find
        </button>
        <button type="button" class="tool" onClick={() => store.openDialog({ kind: "create" })}>
          New group
        </button>
        <button type="button" class="tool" onClick={() => store.openDialog({ kind: "profile" })}>
          Profile
        </button>
        <button type="button" class="tool" onClick={() => void store.logout()}>
          Log out
        </button>
      </nav>
      <div class="tabs" role="tablist" aria-label="Lists">
        {tabs.map(([id, label]) => (
          <button
            type="button"
            role="tab"
            id={`tab-${id}`}
            aria-selected={s.tab === id}
            aria-controls={`panel-${id}`}
            tabIndex={s.tab === id ? 0 : -1}
            onClick={() => store.setTab(id)}
            onKeyDown={(e) => {
              const i = tabs.findIndex(([t]) => t === s.tab);
              const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
              if (d) {
                const next = tabs[(i + d + tabs.length) % tabs.length]![0];
                store.setTab(next);
                document.getElementById(`tab-${next}`)?.focus();
              }
            }}
          >
            {label}
            {id === "chats" && totalUnread > 0 && <span class="badge">{totalUnread}</span>}
          </button>
        ))}
      </div>
      <div class="tab-panel" role="tabpanel" id={`panel-${s.tab}`} aria-labelledby={`tab-${s.tab}`}>
        {s.tab === "friends" && <Friends />}
        {s.tab === "groups" && <Groups />}
        {s.tab === "chats" && <Chats />}
      </div>
    </section>
  );
}

function UnreadBadge({ cid }: { cid: string }) {
  const c = useStore().conversation(cid);
  if (!c || c.unread <= 0) return null;
  return (
    <span class="badge" data-test="unread" aria-label={`${c.unread} unread`}>
      {c.unread}
    </span>
  );
}

function Friends() {
  const store = useStore();
  const s = store.state;
  const me = s.me!;
  if (s.friendGroups.length === 0) return <p class="muted pad">Loading friends…</p>;
  return (
    <div>
      {s.friendGroups.map((g) => {
        const open = !s.collapsed.has(g.id);
        const online = g.friends.filter((f) => f.online).length;
        return (
          <div class="fgroup" key={g.id}>
            <button type="button" class="fgroup-head" aria-expanded={open} onClick={() => store.toggleFriendGroup(g.id)}>
              <span aria-hidden="true">{open ? "▾" : "▸"}</span> {g.name}{" "}
              <span class="muted">
                ({online}/{g.friends.length})
              </span>
            </button>
            {open && (
              <ul class="rows">
                {g.friends.length === 0 && <li class="muted pad">No friends here yet</li>}
                {g.friends.map((f) => {
                  const cid = privateCid(me.id, f.user.id);
                  return (
                    <li key={f.user.id}>
                      <button type="button" class="row" data-user={f.user.id} onClick={() => void store.openChat(cid)}>
                        <Avatar name={f.user.nickname} src={f.user.avatar} online={f.online} />
                        <span class="row-text">
                          <span class="row-title">{f.remark || f.user.nickname}</span>
                          <span class="muted">{f.user.signature || (f.online ? "online" : "offline")}</span>
                        </span>
                        <UnreadBadge cid={cid} />
                      </button>
                    </li>
                  );
                })}
              </ul>
            )}
          </div>
        );
      })}
    </div>
  );
}

function Groups() {
  const store = useStore();
  const groups = store.state.groups;
  if (groups.length === 0) return <p class="muted pad">No groups yet. Find one, or create one.</p>;
  return (
    <ul class="rows">
      {groups.map((g) => (
        <li key={g.id}>
          <button type="button" class="row" data-group={g.id} onClick={() => void store.openChat(`g-${g.id}`)}>
            <Avatar name={g.name} src={g.avatar} />
            <span class="row-text">
              <span class="row-title">{g.name}</span>
              <span class="muted">
                {g.member_count} members{g.my_role !== "member" ? ` · ${g.my_role}` : ""}
              </span>
            </span>
            <UnreadBadge cid={`g-${g.id}`} />
          </button>
        </li>
      ))}
    </ul>
  );
}

function Chats() {
  const store = useStore();
  const list = store.state.conversations;
  if (list.length === 0) return <p class="muted pad">No conversations yet.</p>;
  return (
    <ul class="rows">
      {list.map((c: Conversation) => {
        const title = store.title(c.id);
        return (
          <li key={c.id}>
            <button type="button" class="row" data-conversation={c.id} onClick={() => void store.openChat(c.id)}>
              <Avatar name={title} src={c.peer?.avatar ?? c.group?.avatar} online={c.peer ? !!c.peer.online : undefined} />
              <span class="row-text">
                <span class="row-title">{title}</span>
                <span class="muted preview">{preview(c.last_message)}</span>
              </span>
              <span class="row-side">
                {c.last_message && <span class="muted small">{time(c.last_message.created_at)}</span>}
                <UnreadBadge cid={c.id} />
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}
