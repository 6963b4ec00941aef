//! The whole client: the sign-in screen, or the main panel beside the open chat (one column at phone
//! width, where the chat replaces the panel), the open dialog, toasts, and the connection banner.

import { ChatWindow } from "./ChatWindow";
import { CreateGroupDialog } from "./CreateGroupDialog";
import { FindDialog } from "./FindDialog";
import { GroupManageDialog } from "./GroupManageDialog";
import { Auth } from "./Auth";
import { MainPanel } from "./MainPanel";
import { MessageBox } from "./MessageBox";
import { ProfileDialog } from "./ProfileDialog";
import { useStore } from "./context";

export function App() {
  const store = useStore();
  const s = store.state;
  return (
    <>
      {s.phase === "starting" && (
        <main class="center" aria-busy="true">
          <p>Loading…</p>
        </main>
      )}
      {s.phase === "signed_out" && <Auth />}
      {s.phase === "ready" && (
        <div class={`layout${s.active ? " chat-open" : ""}`}>
          <ConnectionBanner />
          <MainPanel />
          {s.active ? (
            <ChatWindow key={s.active} cid={s.active} />
          ) : (
            <section class="chat empty" aria-label="Chat">
              <p>Choose a friend, a group or a conversation to start chatting.</p>
            </section>
          )}
          {s.dialog?.kind === "box" && <MessageBox />}
          {s.dialog?.kind === "find" && <FindDialog />}
          {s.dialog?.kind === "create" && <CreateGroupDialog />}
          {s.dialog?.kind === "profile" && <ProfileDialog />}
          {s.dialog?.kind === "manage" && <GroupManageDialog groupId={s.dialog.groupId} />}
        </div>
      )}
      <div class="toasts" role="status" aria-live="polite">
        {s.toasts.map((t) => (
          <div key={t.id} class={`toast ${t.kind}`} role={t.kind === "error" ? "alert" : undefined}>
            <span>{t.text}</span>
            <button type="button" class="icon" aria-label="Dismiss" onClick={() => store.dismissToast(t.id)}>
              ×
            </button>
          </div>
        ))}
      </div>
    </>
  );
}

function ConnectionBanner() {
  const s = useStore().state;
  if (s.conn === "open") return null;
  const text = s.conn === "waiting" ? "Offline: reconnecting…" : s.conn === "connecting" ? "Connecting…" : "Not connected";
  return (
    <div class="conn-banner" role="status" data-conn={s.conn}>
      {text}
    </div>
  );
}
