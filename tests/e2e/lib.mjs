// Shared set-up for the end-to-end tests: the engine (TESSERA_ENGINE:
// chromium, firefox or webkit; see engine.mjs), the auth server's URL,
// screenshots per engine under a git-ignored folder.
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

export { launch, ENGINE } from "./engine.mjs";
import { ENGINE } from "./engine.mjs";

export const AUTH = process.env.TESSERA_AUTH_URL || "http://127.0.0.1:18787";
export const SHOTS = fileURLToPath(new URL(`./screenshots/${ENGINE}/`, import.meta.url));
mkdirSync(SHOTS, { recursive: true });

/** Polls `fn` until it returns truthy or `ms` pass; returns the last value. */
export async function until(fn, ms = 5000, step = 50) {
  const end = Date.now() + ms;
  let v;
  while (Date.now() < end) {
    v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, step));
  }
  return fn();
}

/** The auth server's record of a session. */
export async function family(sid) {
  const r = await fetch(`${AUTH}/test/family/${sid}`);
  return r.json();
}
