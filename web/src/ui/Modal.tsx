//! A modal dialog on the native `<dialog>` element: focus moves into it and stays there, Escape closes
//! it, and its title names it for screen readers.

import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Modal(props: { id: string; title: string; onClose: () => void; children: ComponentChildren; wide?: boolean }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  return (
    <dialog
      ref={ref}
      id={props.id}
      class={`modal${props.wide ? " wide" : ""}`}
      aria-labelledby={`${props.id}-title`}
      onClose={props.onClose}
    >
      <header class="modal-head">
        <h2 id={`${props.id}-title`}>{props.title}</h2>
        <button type="button" class="icon" aria-label="Close" onClick={props.onClose}>
          ×
        </button>
      </header>
      <div class="modal-body">{props.children}</div>
    </dialog>
  );
}
