//! Group management. Everyone sees the members with their roles and presence; owners and admins also
//! see the pending join requests (approve, refuse), the group settings (name, description, all-mute,
//! approval), and per member what their role allows: promote or demote (owner), mute until a time or
//! unmute, kick; the owner can transfer ownership and dismiss the group; others can leave it.
//! Destructive actions ask for a second click instead of a browser popup.

import type { Member } from "@imcloud/client";
import { useState } from "preact/hooks";
import { Avatar } from "./Avatar";
import { Modal } from "./Modal";
import { useStore } from "./context";
import { until } from "./format";

const MUTE_CHOICES: [string, number][] = [
  ["10 minutes", 10 * 60_000],
  ["1 hour", 3_600_000],
  ["1 day", 86_400_000],
  ["7 days", 7 * 86_400_000],
];

export function GroupManageDialog({ groupId }: { groupId: number }) {
  const store = useStore();
  const s = store.state;
  const group = store.group(groupId);
  const members = s.members.get(groupId) ?? [];
  const me = s.me!;
  if (!group) {
    return (
      <Modal id="manage" title="Group" onClose={() => store.closeDialog()}>
        <p>{s.removed.get(groupId) ?? "You are not a member of this group."}</p>
      </Modal>
    );
  }
  const role = group.my_role;
  const manager = role === "owner" || role === "admin";
  const requests = (s.joinRequests.get(groupId) ?? []).filter((r) => r.status === "pending");
  return (
    <Modal id="manage" title={`${group.name}: ${manager ? "manage" : "members"}`} onClose={() => store.closeDialog()} wide>
      <p class="muted small">
        No. {group.group_no} · {group.member_count}/{group.max_members} members · you are {role}
      </p>
      {manager && <Settings groupId={groupId} />}
      {manager && requests.length > 0 && (
        <section aria-labelledby="join-requests-title">
          <h3 id="join-requests-title">Join requests</h3>
          <ul class="results">
            {requests.map((r) => (
              <li key={r.id}>
                <span class="row-text">
                  <span class="row-title">{store.nameOf(r.user_id)}</span>
                  {r.note && <span class="muted small">“{r.note}”</span>}
                </span>
                <button type="button" class="primary" onClick={() => void store.handleJoin(groupId, r.id, true)}>
                  Approve
                </button>
                <button type="button" onClick={() => void store.handleJoin(groupId, r.id, false)}>
                  Refuse
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="members-title">
        <h3 id="members-title">Members</h3>
        <ul class="results members">
          {members.map((m) => (
            <MemberRow key={m.user.id} groupId={groupId} m={m} myRole={role ?? "member"} isMe={m.user.id === me.id} />
          ))}
        </ul>
      </section>
      <Danger groupId={groupId} owner={role === "owner"} />
    </Modal>
  );
}

function Settings({ groupId }: { groupId: number }) {
  const store = useStore();
  const g = store.group(groupId)!;
  const [name, setName] = useState(g.name);
  const [description, setDescription] = useState(g.description);
  return (
    <section aria-labelledby="settings-title">
      <h3 id="settings-title">Settings</h3>
      <form
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void store.updateGroup(groupId, { name, description });
        }}
      >
        <label>
          Name
          <input name="name" required maxLength={32} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Description
          <input name="description" maxLength={200} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <button type="submit">Save name and description</button>
      </form>
      <label class="check">
        <input type="checkbox" checked={g.all_muted} onChange={(e) => void store.updateGroup(groupId, { all_muted: e.currentTarget.checked })} /> Mute
        everyone but the owner and admins
      </label>
      <label class="check">
        <input
          type="checkbox"
          checked={g.need_approval}
          onChange={(e) => void store.updateGroup(groupId, { need_approval: e.currentTarget.checked })}
        />{" "}
        Joining needs approval
      </label>
    </section>
  );
}

function MemberRow({ groupId, m, myRole, isMe }: { groupId: number; m: Member; myRole: string; isMe: boolean }) {
  const store = useStore();
  const [mute, setMute] = useState(MUTE_CHOICES[0]![1]);
  const [confirm, setConfirm] = useState<"kick" | "transfer" | null>(null);
  const muted = m.muted_until > Date.now();
  const owner = myRole === "owner";
  // The owner acts on anyone but themself; an admin on plain members only.
  const canModerate = !isMe && (owner || (myRole === "admin" && m.role === "member"));
  const name = store.nameOf(m.user.id);
  return (
    <li data-member={m.user.id}>
      <Avatar name={name} src={m.user.avatar} online={m.online} size={32} />
      <span class="row-text">
        <span class="row-title">
          {name}
          {isMe ? " (you)" : ""}
        </span>
        <span class="muted small" data-test="member-state">
          {m.role}
          {muted ? ` · muted until ${until(m.muted_until)}` : ""}
        </span>
      </span>
      {canModerate && (
        <span class="actions">
          {owner && m.role !== "owner" && (
            <button type="button" onClick={() => void store.setRole(groupId, m.user.id, m.role === "admin" ? "member" : "admin")}>
              {m.role === "admin" ? "Make member" : "Make admin"}
            </button>
          )}
          {muted ? (
            <button type="button" onClick={() => void store.mute(groupId, m.user.id, 0)}>
              Unmute
            </button>
          ) : (
            <>
              <label class="visually-hidden" for={`mute-${m.user.id}`}>
                Mute {name} for
              </label>
              <select id={`mute-${m.user.id}`} value={mute} onChange={(e) => setMute(Number(e.currentTarget.value))}>
                {MUTE_CHOICES.map(([label, ms]) => (
                  <option key={ms} value={ms}>
                    {label}
                  </option>
                ))}
              </select>
              <button type="button" onClick={() => void store.mute(groupId, m.user.id, Date.now() + mute)}>
                Mute
              </button>
            </>
          )}
          {confirm === "kick" ? (
            <button type="button" class="danger" onClick={() => void store.kick(groupId, m.user.id)}>
              Confirm remove
            </button>
          ) : (
            <button type="button" onClick={() => setConfirm("kick")}>
              Remove
            </button>
          )}
          {owner &&
            (confirm === "transfer" ? (
              <button type="button" class="danger" onClick={() => void store.transfer(groupId, m.user.id)}>
                Confirm transfer
              </button>
            ) : (
              <button type="button" onClick={() => setConfirm("transfer")}>
                Make owner
              </button>
            ))}
        </span>
      )}
    </li>
  );
}

function Danger({ groupId, owner }: { groupId: number; owner: boolean }) {
  const store = useStore();
  const [sure, setSure] = useState(false);
  const label = owner ? "Dismiss the group" : "Leave the group";
  return (
    <section class="danger-zone" aria-label={label}>
      {sure ? (
        <button type="button" class="danger" onClick={() => void (owner ? store.dismiss(groupId) : store.leave(groupId))}>
          {owner ? "Confirm: dismiss for everyone" : "Confirm: leave"}
        </button>
      ) : (
        <button type="button" onClick={() => setSure(true)}>
          {label}
        </button>
      )}
    </section>
  );
}
