/** Sign-in: an API key, checked with WhoAmI before it is kept. */
import { useState } from "preact/hooks";

import { signIn, takeSignOutReason } from "../api";
import { navigate } from "../router";

export function SignInPage() {
  const [key, setKeyText] = useState("");
  const [error, setError] = useState(takeSignOutReason);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      await signIn(key.trim());
      navigate(returnPath());
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      setBusy(false);
    }
  }

  return (
    <div class="signin">
      <h1>Sign in to simplane</h1>
      <form onSubmit={submit}>
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          placeholder="sp_…"
          value={key}
          onInput={(e) => setKeyText(e.currentTarget.value)}
          data-testid="api-key"
          required
        />
        <button type="submit" class="primary" disabled={busy || !key.trim()} data-testid="sign-in">
          {busy ? "Checking…" : "Sign in"}
        </button>
        {error && (
          <p class="error" role="alert" data-testid="sign-in-error">
            {error}
          </p>
        )}
      </form>
      <p class="muted">
        <code>simplane up</code> prints an admin key on first start and keeps it in your client config; the Account
        page creates more.
      </p>
    </div>
  );
}

/** Where the user was sent here from; only a path of this site. */
function returnPath(): string {
  const next = new URLSearchParams(location.search).get("next") ?? "";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin") ? next : "/tasks";
}
