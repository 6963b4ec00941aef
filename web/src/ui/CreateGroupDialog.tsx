//! Create a group: name, description, avatar, size and whether joining needs approval.

import { useState } from "preact/hooks";
import { ImagePicker } from "./ImagePicker";
import { Modal } from "./Modal";
import { useStore } from "./context";

export function CreateGroupDialog() {
  const store = useStore();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [avatar, setAvatar] = useState("");
  const [size, setSize] = useState(200);
  const [approval, setApproval] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <Modal id="create" title="Create a group" onClose={() => store.closeDialog()}>
      <form
        class="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          const ok = await store.createGroup({ name, description, avatar, max_members: size, need_approval: approval });
          setBusy(false);
          if (ok) store.closeDialog();
        }}
      >
        <label>
          Name
          <input name="name" required maxLength={32} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Description
          <textarea name="description" maxLength={200} rows={2} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <ImagePicker id="create-avatar" label="Choose an avatar" name={name} value={avatar} onChange={setAvatar} />
        <label>
          Most members
          <input type="number" name="max_members" min={2} max={2000} value={size} onInput={(e) => setSize(Number(e.currentTarget.value))} />
        </label>
        <label class="check">
          <input type="checkbox" name="need_approval" checked={approval} onChange={(e) => setApproval(e.currentTarget.checked)} /> Joining needs
          approval
        </label>
        <button type="submit" class="primary" disabled={busy}>
          Create
        </button>
      </form>
    </Modal>
  );
}
