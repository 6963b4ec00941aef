//! Find and add: search users (account number, exact email or part of a nickname) and add one as a
//! friend with a note and a friend group; search groups (number or part of a name) and join one, with a
//! note when it needs approval.

import type { Group, PublicUser } from "@imcloud/client";
import { useState } from "preact/hooks";
import { Avatar } from "./Avatar";
import { Modal } from "./Modal";
import { useStore } from "./context";

export function FindDialog() {
  const store = useStore();
  const [kind, setKind] = useState<"users" | "groups">("users");
  const [q, setQ] = useState("");
  const [users, setUsers] = useState<PublicUser[] | null>(null);
  const [groups, setGroups] = useState<Group[] | null>(null);
  const search = async (e: Event) => {
    e.preventDefault();
    if (!q.trim()) return;
    if (kind === "users") {
      const r = await store.run("search users", () => store.api.searchUsers(q.trim()));
      setUsers(r?.users ?? []);
    } else {
      const r = await store.run("search groups", () => store.api.searchGroups(q.trim()));
      setGroups(r?.groups ?? []);
    }
  };
  return (
    <Modal id="find" title="Find and add" onClose={() => store.closeDialog()} wide>
      <form class="search" onSubmit={search}>
        <fieldset class="inline">
          <legend class="visually-hidden">Search for</legend>
          <label>
            <input type="radio" name="kind" checked={kind === "users"} onChange={() => setKind("users")} /> Users
          </label>
          <label>
            <input type="radio" name="kind" checked={kind === "groups"} onChange={() => setKind("groups")} /> Groups
          </label>
        </fieldset>
        <label class="grow">
          {kind === "users" ? "Account number, email or nickname" : "Group number or name"}
          <input type="search" name="q" value={q} maxLength={64} onInput={(e) => setQ(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary">
          Search
        </button>
      </form>
      {kind === "users" && users && <UserResults users={users} />}
      {kind === "groups" && groups && <GroupResults groups={groups} />}
    </Modal>
  );
}

function UserResults({ users }: { users: PublicUser[] }) {
  const store = useStore();
  const me = store.state.me!;
  const list = users.filter((u) => u.id !== me.id);
  if (list.length === 0) return <p class="muted">No user found.</p>;
  return (
    <ul class="results">
      {list.map((u) => (
        <li key={u.id} data-user={u.id}>
          <Avatar name={u.nickname} src={u.avatar} />
          <span class="row-text">
            <span class="row-title">{u.nickname}</span>
            <span class="muted small">No. {u.account_no}</span>
          </span>
          {store.friendOf(u.id) ? <span class="muted">Friend</span> : <AddFriend user={u} />}
        </li>
      ))}
    </ul>
  );
}

function AddFriend({ user }: { user: PublicUser }) {
  const store = useStore();
  const [open, setOpen] = useState(false);
  const [note, setNote] = useState("");
  const [group, setGroup] = useState(store.state.friendGroups[0]?.id ?? 0);
  const [sent, setSent] = useState(false);
  if (sent) return <span class="muted">Request sent</span>;
  if (!open)
    return (
      <button type="button" onClick={() => setOpen(true)}>
        Add friend
      </button>
    );
  return (
    <form
      class="add-form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await store.sendFriendRequest(user.id, note, group || undefined)) setSent(true);
      }}
    >
      <label>
        Note
        <input name="note" maxLength={100} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
      </label>
      <label>
        Friend group
        <select value={group} onChange={(e) => setGroup(Number(e.currentTarget.value))}>
          {store.state.friendGroups.map((g) => (
            <option key={g.id} value={g.id}>
              {g.name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" class="primary">
        Send request
      </button>
    </form>
  );
}

function GroupResults({ groups }: { groups: Group[] }) {
  const store = useStore();
  if (groups.length === 0) return <p class="muted">No group found.</p>;
  return (
    <ul class="results">
      {groups.map((g) => (
        <li key={g.id} data-group={g.id}>
          <Avatar name={g.name} src={g.avatar} />
          <span class="row-text">
            <span class="row-title">{g.name}</span>
            <span class="muted small">
              No. {g.group_no} · {g.member_count}/{g.max_members} members{g.need_approval ? " · needs approval" : ""}
            </span>
          </span>
          {store.group(g.id) ? <span class="muted">Member</span> : <JoinGroup group={g} />}
        </li>
      ))}
    </ul>
  );
}

function JoinGroup({ group }: { group: Group }) {
  const store = useStore();
  const [note, setNote] = useState("");
  const [done, setDone] = useState(false);
  if (done) return <span class="muted">{group.need_approval ? "Request sent" : "Joined"}</span>;
  return (
    <form
      class="add-form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await store.joinGroup(group.id, note)) setDone(true);
      }}
    >
      {group.need_approval && (
        <label>
          Note
          <input name="note" maxLength={100} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
      )}
      <button type="submit" class="primary">
        {group.need_approval ? "Ask to join" : "Join"}
      </button>
    </form>
  );
}
