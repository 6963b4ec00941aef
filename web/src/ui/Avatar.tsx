//! A round avatar: the uploaded image, or the name's first letter on a colour derived from the name.
//! With `online` set it carries a presence dot (green online, grey offline) that says so in words too.

import { useStore } from "./context";

/** Number of letter-avatar colours (classes bg-0 … bg-7 in styles.css). */
const COLOURS = 8;

export function Avatar(props: { name: string; src?: string | null; online?: boolean; size?: number }) {
  const store = useStore();
  const size = props.size ?? 40;
  const letter = (props.name.trim()[0] ?? "?").toUpperCase();
  const colour = [...props.name].reduce((n, c) => n + c.charCodeAt(0), 0) % COLOURS;
  return (
    <span class={`avatar size-${size}`}>
      {props.src ? (
        <img src={store.api.uploadUrl(props.src)} alt="" width={size} height={size} />
      ) : (
        <span class={`avatar-letter bg-${colour}`} aria-hidden="true">
          {letter}
        </span>
      )}
      {props.online !== undefined && (
        <span
          class={`dot ${props.online ? "online" : "offline"}`}
          role="img"
          aria-label={props.online ? "online" : "offline"}
          data-presence={props.online ? "online" : "offline"}
        />
      )}
    </span>
  );
}
