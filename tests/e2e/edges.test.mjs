// The session at the edges of a real browser (the second session review):
// several instances of the package in one tab (an iframe, micro-frontends,
// two package versions) share a tab's sessionStorage and must not take each
// other for a duplicated tab (R7); with sessionStorage, each tab's session
// keeps its own DPoP key, and a logout in one tab destroys only its own
// session's key (R2).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, ENGINE, launch, until, family } from "./lib.mjs";

let browser;

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

test("two instances in one tab share its sessionStorage and are not taken for a copied tab (R7)", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(harness("?top"));
  const options = { storage: "sessionStorage", storageKey: "e2e-two" };
  await ready(page, options);
  const sid = await page.evaluate(() => window.signIn("edges-two", 300));
  // A second instance of the package in the same tab: an iframe of the same
  // origin has its own module and wasm instance, and the tab's storage.
  const frame = async (fn, arg) => page.evaluate(fn, arg);
  await frame(() => {
    const f = document.createElement("iframe");
    f.id = "second";
    f.src = "/harness/index.html?frame";
    document.body.appendChild(f);
    return true;
  });
  assert.ok(await until(() => frame((g) => { const w = document.getElementById("second").contentWindow; return w && w.harnessReady === true; }), 10000), "the frame loaded");
  await frame((o) => document.getElementById("second").contentWindow.makeManager(o), options);
  // Both instances stay signed in: neither wipes the record as a copy.
  await new Promise((r) => setTimeout(r, 1500));
  const top = await page.evaluate(() => window.tm.accessToken);
  const second = await frame(() => document.getElementById("second").contentWindow.tm.accessToken);
  assert.ok(top, "the first instance keeps its session");
  assert.equal(second, top, "the second instance has the same session");
  const events = await page.evaluate(() => window.events.map((e) => e.name));
  assert.deepEqual(events, ["tokens"], "no logout in the first instance");
  const frameEvents = await frame(() => document.getElementById("second").contentWindow.events.map((e) => e.name));
  assert.ok(!frameEvents.includes("logout"), `no logout in the second: ${frameEvents}`);
  // Reloaded, the frame is the same tab still.
  await frame(() => { document.getElementById("second").contentWindow.location.reload(); return true; });
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(await until(() => frame(() => { const w = document.getElementById("second").contentWindow; return w && w.harnessReady === true; }), 10000));
  await frame((o) => document.getElementById("second").contentWindow.makeManager(o), options);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await frame(() => document.getElementById("second").contentWindow.tm.accessToken), top);
  assert.equal(await page.evaluate(() => window.tm.accessToken), top);
  assert.equal((await family(sid)).revoked, false, "the session was never ended");
  await context.close();
});

test("sessionStorage tabs keep their own DPoP keys; a logout destroys only its own (R2)", async () => {
  const context = await browser.newContext();
  const a = await context.newPage();
  const b = await context.newPage();
  const options = { storage: "sessionStorage", storageKey: "e2e-dpop", dpop: true };
  for (const p of [a, b]) {
    await p.goto(harness("?dpop"));
    await ready(p, options);
  }
  const sidA = await a.evaluate(() => window.signInDpop("edges-dpop-a", 300));
  const sidB = await b.evaluate(() => window.signInDpop("edges-dpop-b", 300));
  const jktA = (await family(sidA)).jkt;
  const jktB = (await family(sidB)).jkt;
  assert.ok(jktA && jktB, "both sessions are bound to a key");
  assert.notEqual(jktA, jktB, "each tab's session has its own key");
  assert.equal(await a.evaluate(() => window.me()), 200);
  assert.equal(await b.evaluate(() => window.me()), 200);
  // Tab A signs out: its key is destroyed, tab B's is not.
  await a.evaluate(() => window.tm.logout());
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await b.evaluate(() => window.me()), 200, "tab B still proves its key");
  // Tab B reloads: it loads its own session's key, not whatever the key
  // name now holds.
  await b.reload();
  await ready(b, options);
  assert.ok(await until(() => b.evaluate(() => !!window.tm.accessToken), 3000), "tab B kept its session");
  assert.equal(await b.evaluate(() => window.me()), 200, "and its key");
  await b.evaluate(() => window.tm.refresh());
  assert.equal(await b.evaluate(() => window.me()), 200, "a refresh proves the same key");
  const f = await family(sidB);
  assert.equal(f.revoked, false);
  assert.equal(f.reuse_detected, false);
  // Tab A signs in again: a new session, a new key; B is untouched.
  const sidA2 = await a.evaluate(() => window.signInDpop("edges-dpop-a2", 300));
  assert.notEqual((await family(sidA2)).jkt, jktB);
  assert.equal(await a.evaluate(() => window.me()), 200);
  assert.equal(await b.evaluate(() => window.me()), 200);
  await context.close();
});
