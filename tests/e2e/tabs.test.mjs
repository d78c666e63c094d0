// Two pages in one browser context share localStorage, as two tabs of the
// same site do. They must stay in sync, refresh once between them (the
// auth server enforces rotation: a reused refresh token ends the session),
// and log out together.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, launch, until, family, SHOTS } from "./lib.mjs";

let browser, context, one, two;

before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Two pages in one new context; `initScript` runs in each before its own scripts. */
async function openTabs(options = {}, initScript) {
  context = await browser.newContext();
  if (initScript) await context.addInitScript(initScript);
  one = await context.newPage();
  two = await context.newPage();
  for (const p of [one, two]) {
    await p.goto(`${AUTH}/harness/index.html`);
    await p.waitForFunction(() => window.harnessReady === true);
    await p.evaluate((o) => window.makeManager(o), options);
  }
}

test("a sign-in in one tab reaches the other within a second", async () => {
  await openTabs();
  await one.evaluate(() => window.signIn("tabs-a", 300));
  const token = await one.evaluate(() => window.tm.accessToken);
  const seen = await until(() => two.evaluate((t) => window.tm.accessToken === t, token), 1000);
  assert.ok(seen, "the second tab has the same token");
  const events = await two.evaluate(() => window.events.map((e) => e.name));
  assert.deepEqual(events, ["tokens"]);
  await context.close();
});

test("two tabs due at once make exactly one refresh and end with the same token", async () => {
  await openTabs();
  const sid = await one.evaluate(() => window.signIn("tabs-b", 300, true));
  await until(() => two.evaluate(() => !!window.tm.accessToken), 1000);
  const old = await one.evaluate(() => window.tm.accessToken);
  // Both tabs see the token due and ask for one at the same instant.
  const [a, b] = await Promise.all([
    one.evaluate(() => window.tm.getAccessToken()),
    two.evaluate(() => window.tm.getAccessToken()),
  ]);
  assert.notEqual(a, old, "a new token");
  assert.equal(a, b, "both tabs hold the same new token");
  const f = await family(sid);
  assert.equal(f.refreshes, 1, "exactly one refresh reached the server");
  assert.equal(f.reuse_detected, false);
  assert.equal(f.revoked, false, "the session survived");
  await one.screenshot({ path: `${SHOTS}/tabs-after-refresh.png` });
  await context.close();
});

test("logout in one tab logs out the other", async () => {
  await openTabs();
  await one.evaluate(() => window.signIn("tabs-c", 300));
  await until(() => two.evaluate(() => !!window.tm.accessToken), 1000);
  await one.evaluate(() => window.tm.logout());
  const out = await until(() => two.evaluate(() => window.tm.accessToken === undefined), 1000);
  assert.ok(out, "the second tab is signed out");
  const last = await two.evaluate(() => window.events.at(-1));
  assert.equal(last.name, "logout");
  assert.equal(last.reason, "remote");
  await context.close();
});

test("without Web Locks, the storage lease still allows only one refresh", async () => {
  await openTabs({}, () => {
    Object.defineProperty(navigator, "locks", { configurable: true, value: undefined });
  });
  const sid = await one.evaluate(() => window.signIn("tabs-d", 300));
  await until(() => two.evaluate(() => !!window.tm.accessToken), 1000);
  const [a, b] = await Promise.all([
    one.evaluate(() => window.tm.refresh().then(() => window.tm.accessToken)),
    two.evaluate(() => window.tm.refresh().then(() => window.tm.accessToken)),
  ]);
  assert.equal(a, b);
  assert.equal((await family(sid)).refreshes, 1);
  await context.close();
});
