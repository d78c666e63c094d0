// Shared set-up for the end-to-end tests: Debian's Chromium through
// playwright-core, the auth server's URL, screenshots under a git-ignored folder.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const AUTH = process.env.TESSERA_AUTH_URL || "http://127.0.0.1:18787";
export const SHOTS = fileURLToPath(new URL("./screenshots/", import.meta.url));
mkdirSync(SHOTS, { recursive: true });

/** Starts Debian's Chromium headless, with the flags this machine needs. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}

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
