//! Sign in or register. Errors from the server are shown under the form, in its words.

import { useState } from "preact/hooks";
import { useStore } from "./context";

export function Auth() {
  const store = useStore();
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [nickname, setNickname] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    if (mode === "login") await store.login(email, password);
    else await store.register(email, nickname, password);
    setBusy(false);
  };
  return (
    <main class="auth">
      <form class="card" onSubmit={submit} aria-labelledby="auth-title">
        <h1 id="auth-title">{mode === "login" ? "Log in to imcloud" : "Create an imcloud account"}</h1>
        {store.state.signedOutReason && (
          <p class="note" role="alert">
            {store.state.signedOutReason}
          </p>
        )}
        <label>
          Email
          <input type="email" name="email" autocomplete="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        {mode === "register" && (
          <label>
            Nickname
            <input name="nickname" required maxLength={32} value={nickname} onInput={(e) => setNickname(e.currentTarget.value)} />
          </label>
        )}
        <label>
          Password
          <input
            type="password"
            name="password"
            autocomplete={mode === "login" ? "current-password" : "new-password"}
            required
            minLength={8}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {mode === "login" ? "Log in" : "Register"}
        </button>
        <p>
          {mode === "login" ? "No account yet? " : "Have an account? "}
          <button type="button" class="link" onClick={() => setMode(mode === "login" ? "register" : "login")}>
            {mode === "login" ? "Register" : "Log in"}
          </button>
        </p>
      </form>
    </main>
  );
}
