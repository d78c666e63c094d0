// Two pages in one browser context share localStorage, as two tabs of the
// same site do. They must stay in sync, refresh once between them (the
// auth server enforces rotation: a reused refresh token ends the session),
// and log out together. With sessionStorage, a tab opened from another
// (window.open without noopener) starts with a copy of its storage: it must
// never present the refresh token it shares with the original.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, ENGINE, launch, until, family, SHOTS } from "./lib.mjs";

let browser, context, one, two;

before(async () => {
  browser = await launch();
  console.log(`# engine ${ENGINE} ${browser.version}`);
});
after(async () => {
  await browser?.close();
});

const harness = (query = "") => `${AUTH}/harness/index.html${query}`;

async function ready(page, options) {
  await page.waitFor(() => window.harnessReady === true, undefined, 10000);
  await page.evaluate((o) => window.makeManager(o), options);
}

/** Two pages in one new context; `query` goes on the harness URL. */
async function openTabs(options = {}, query = "") {
  context = await browser.newContext();
  one = await context.newPage();
  two = await context.newPage();
  for (const p of [one, two]) {
    await p.goto(harness(query));
    await ready(p, options);
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
  // Both tabs see the token due and ask for one at the same instant (agreed
  // in advance: WebKit's WebDriver runs one command at a time).
  const at = Date.now() + 1000;
  const ask = (at) => {
    window.asked = new Promise((r) => setTimeout(r, at - Date.now())).then(() => window.tm.getAccessToken());
  };
  await one.evaluate(ask, at);
  await two.evaluate(ask, at);
  assert.ok(Date.now() < at, "both asked before the instant");
  const a = await one.evaluate(() => window.asked);
  const b = await two.evaluate(() => window.asked);
  assert.notEqual(a, old, "a new token");
  assert.equal(a, b, "both tabs hold the same new token");
  const f = await family(sid);
  assert.equal(f.refreshes, 1, "exactly one refresh reached the server");
  assert.equal(f.reuse_detected, false);
  assert.equal(f.revoked, false, "the session survived");
  await one.screenshot(`${SHOTS}/tabs-after-refresh.png`);
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
  await openTabs({}, "?nolocks");
  assert.equal(await one.evaluate(() => navigator.locks === undefined), true, "Web Locks are hidden");
  const sid = await one.evaluate(() => window.signIn("tabs-d", 300));
  await until(() => two.evaluate(() => !!window.tm.accessToken), 1000);
  // Both tabs call refresh() at one agreed instant. Evaluating the calls
  // themselves would not race in WebKit: its WebDriver runs one command at a
  // time, so the second refresh() would start only after the first had
  // finished and, once the other tab has seen the new record, rightly
  // refresh a second time.
  const at = Date.now() + 1000;
  const race = (at) => {
    window.raced = new Promise((r) => setTimeout(r, at - Date.now())).then(() => window.tm.refresh()).then(() => window.tm.accessToken);
  };
  await one.evaluate(race, at);
  await two.evaluate(race, at);
  assert.ok(Date.now() < at, "both refreshes were scheduled before the instant");
  const a = await one.evaluate(() => window.raced);
  const b = await two.evaluate(() => window.raced);
  assert.equal(a, b);
  assert.equal((await family(sid)).refreshes, 1);
  await context.close();
});

test("a tab opened from another with sessionStorage never shares its refresh token (F5)", async () => {
  context = await browser.newContext();
  one = await context.newPage();
  await one.goto(harness("?session"));
  await ready(one, { storage: "sessionStorage", storageKey: "e2e-copy" });
  // 8 s tokens: both tabs would refresh within the test if both could.
  const sid = await one.evaluate(() => window.signIn("tabs-copy", 8));
  const copied = await one.evaluate(() => sessionStorage.getItem("e2e-copy") !== null);
  assert.ok(copied);
  two = await one.open(harness("?session"));
  await ready(two, { storage: "sessionStorage", storageKey: "e2e-copy" });
  // Every engine copies sessionStorage into a window its page opens.
  const inherited = await two.evaluate(() => sessionStorage.getItem("e2e-copy.tab") !== null);
  assert.ok(inherited, `${ENGINE} copied sessionStorage into the opened window`);
  const out = await until(() => two.evaluate(() => window.tm.accessToken === undefined), 3000);
  assert.ok(out, "the copy starts signed out");
  assert.deepEqual(await two.evaluate(() => window.events.map((e) => [e.name, e.reason])), [["logout", "duplicate"]]);
  assert.ok(await one.evaluate(() => !!window.tm.accessToken), "the original keeps its session");
  // The original refreshes (twice in 12 s); the server never sees a reuse.
  await new Promise((r) => setTimeout(r, 12000));
  const f = await family(sid);
  assert.ok(f.refreshes >= 1, "the original refreshed");
  assert.equal(f.reuse_detected, false, "no refresh token was presented twice");
  assert.equal(f.revoked, false);
  assert.equal(await two.evaluate(() => window.tm.accessToken), undefined, "the copy never signed back in");
  await one.screenshot(`${SHOTS}/tabs-session-copy.png`);
  await context.close();
});
