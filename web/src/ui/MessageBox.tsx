//! The message box: friend requests (accept into a chosen friend group, or refuse), group join requests
//! for groups I own or run (approve or refuse), the results of my own requests, group notices and
//! system notices. Opening it marks everything read; what is still pending keeps its buttons.

import { type FriendRequest, type JoinRequest, type Notification, type PublicUser, notificationContent } from "@imcloud/client";
import { useState } from "preact/hooks";
import { Modal } from "./Modal";
import { useStore } from "./context";
import { time } from "./format";

export function MessageBox() {
  const store = useStore();
  const items = store.state.box.items;
  return (
    <Modal id="box" title="Message box" onClose={() => store.closeDialog()} wide>
      {items.length === 0 ? (
        <p class="muted">Nothing here yet.</p>
      ) : (
        <ul class="box-list">
          {items.map((n) => (
            <li key={n.id} class="box-item" data-kind={n.kind}>
              <Item n={n} />
              <span class="muted small">{time(n.created_at)}</span>
            </li>
          ))}
        </ul>
      )}
    </Modal>
  );
}

function Item({ n }: { n: Notification }) {
  const c = notificationContent(n);
  switch (c.kind) {
    case "friend_request":
      return <FriendRequestItem req={c.payload} />;
    case "friend_request_result":
      return (
        <p>
          <strong>{c.payload.user?.nickname ?? `User ${c.payload.to_user_id}`}</strong>{" "}
          {c.payload.status === "accepted" ? "accepted" : "refused"} your friend request.
        </p>
      );
    case "group_join_request":
      return <JoinRequestItem p={c.payload} />;
    case "group_join_result":
      return (
        <p>
          Your request to join <strong>{c.payload.group_name}</strong> was {c.payload.status === "accepted" ? "approved" : "refused"}.
        </p>
      );
    case "group_notice":
      return c.payload.change === "kicked" ? (
        <p>
          You were removed from the group <strong>{c.payload.name}</strong>.
        </p>
      ) : (
        <p>
          The group <strong>{c.payload.name}</strong> was dismissed.
        </p>
      );
    case "system":
      return (
        <p>
          <strong>{c.payload.title}</strong>
          <br />
          {c.payload.content}
        </p>
      );
    case "other":
      return <p>A notice of a kind this client does not know yet ({c.name}).</p>;
  }
}

function FriendRequestItem({ req }: { req: FriendRequest }) {
  const store = useStore();
  const current = store.state.incoming.find((r) => r.id === req.id) ?? req;
  const groups = store.state.friendGroups;
  const [group, setGroup] = useState<number>(groups[0]?.id ?? 0);
  const [busy, setBusy] = useState(false);
  const who = req.user?.nickname ?? `User ${req.from_user_id}`;
  const act = async (accept: boolean) => {
    setBusy(true);
    if (accept) await store.acceptFriend(req.id, group || undefined);
    else await store.refuseFriend(req.id);
    setBusy(false);
  };
  return (
    <div class="box-body">
      <p>
        <strong>{who}</strong> wants to be your friend{req.note ? `: “${req.note}”` : "."}
      </p>
      {current.status === "pending" ? (
        <div class="actions">
          <label>
            Friend group
            <select value={group} onChange={(e) => setGroup(Number(e.currentTarget.value))}>
              {groups.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </label>
          <button type="button" class="primary" disabled={busy} onClick={() => void act(true)}>
            Accept
          </button>
          <button type="button" disabled={busy} onClick={() => void act(false)}>
            Refuse
          </button>
        </div>
      ) : (
        <p class="muted small" data-test="request-status">
          {current.status === "accepted" ? "Accepted" : "Refused"}
        </p>
      )}
    </div>
  );
}

function JoinRequestItem({ p }: { p: { request: JoinRequest; group_id: number; group_name: string; user: PublicUser } }) {
  const store = useStore();
  const current = store.state.joinRequests.get(p.group_id)?.find((r) => r.id === p.request.id) ?? p.request;
  const canHandle = store.managedGroups().some((g) => g.id === p.group_id);
  const [busy, setBusy] = useState(false);
  const act = async (accept: boolean) => {
    setBusy(true);
    await store.handleJoin(p.group_id, p.request.id, accept);
    setBusy(false);
  };
  return (
    <div class="box-body">
      <p>
        <strong>{p.user?.nickname ?? `User ${p.request.user_id}`}</strong> asks to join <strong>{p.group_name}</strong>
        {p.request.note ? `: “${p.request.note}”` : "."}
      </p>
      {current.status === "pending" && canHandle ? (
        <div class="actions">
          <button type="button" class="primary" disabled={busy} onClick={() => void act(true)}>
            Approve
          </button>
          <button type="button" disabled={busy} onClick={() => void act(false)}>
            Refuse
          </button>
        </div>
      ) : (
        <p class="muted small" data-test="request-status">
          {current.status === "pending" ? "Pending" : current.status === "accepted" ? "Approved" : "Refused"}
        </p>
      )}
    </div>
  );
}
