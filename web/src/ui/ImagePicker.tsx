//! Picks an image, uploads it, and reports its URL (for avatars); shows the current one.

import { useState } from "preact/hooks";
import { Avatar } from "./Avatar";
import { useStore } from "./context";

export function ImagePicker(props: { id: string; label: string; name: string; value: string; onChange: (url: string) => void }) {
  const store = useStore();
  const [busy, setBusy] = useState(false);
  return (
    <div class="picker">
      <Avatar name={props.name || "?"} src={props.value} size={48} />
      <label for={props.id} class="button">
        {busy ? "Uploading…" : props.label}
      </label>
      <input
        id={props.id}
        class="visually-hidden"
        type="file"
        accept="image/png,image/jpeg,image/gif,image/webp"
        onChange={async (e) => {
          const f = e.currentTarget.files?.[0];
          if (!f) return;
          setBusy(true);
          const url = await store.upload(f);
          setBusy(false);
          if (url) props.onChange(url);
        }}
      />
    </div>
  );
}
