// The demo, driven as a person would: sign in, call the API, watch an
// automatic refresh, reload, open a second tab, break the server and watch
// the recovery, sign out in one tab and see both signed out. Screenshots of
// each state land in tests/e2e/screenshots/ (git-ignored).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, ENGINE, launch, until, family, SHOTS } from "./lib.mjs";

let browser, context, page, second;

before(async () => {
  browser = await launch();
  console.log(`# engine ${ENGINE} ${browser.version}`);
  context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  page = await context.newPage();
});
after(async () => {
  await browser?.close();
});

const logText = (p) => p.text("#log");
const claims = async (p) => JSON.parse(await p.text("#claims"));
const shot = (p, name) => p.screenshot(`${SHOTS}/demo-${name}.png`);

async function open(p) {
  await p.goto(`${AUTH}/`);
  await p.waitFor(() => document.body && document.body.dataset.ready === "true", undefined, 10000);
}

test("the demo, end to end", async (t) => {
  let sid;

  await t.test("sign in", async () => {
    await open(page);
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.waitFor(() => document.body && document.body.dataset.ready === "true", undefined, 10000);
    await shot(page, "1-signed-out");
    await page.fill('input[name="username"]', "demo-user");
    await page.select('select[name="ttl"]', "10");
    await page.click("#signin-button");
    await page.waitForSelector("#session-card:not([hidden])");
    assert.equal(await page.text("#status"), "signed in");
    const c = await claims(page);
    assert.equal(c.sub, "demo-user");
    sid = c.sid;
    assert.match(await logText(page), /tokens: at-/);
    await shot(page, "2-signed-in");
  });

  await t.test("call the protected API through tm.fetch", async () => {
    await page.click("#call-api");
    await until(async () => (await page.text("#api-result")).startsWith("HTTP"));
    const out = await page.text("#api-result");
    assert.match(out, /^HTTP 200/);
    assert.match(out, /"sub":"demo-user"/);
    await shot(page, "3-api-called");
  });

  await t.test("an automatic refresh happens by itself", async () => {
    const first = (await claims(page)).jti;
    const refreshed = await until(async () => (await claims(page)).jti !== first, 9000, 200);
    assert.ok(refreshed, "a new token arrived without any click");
    assert.ok((await family(sid)).refreshes >= 1);
    assert.equal(await page.text("#status"), "signed in");
    await shot(page, "4-refreshed");
  });

  await t.test("a reload keeps the session", async () => {
    const before = (await claims(page)).sid;
    await page.reload();
    await page.waitFor(() => document.body && document.body.dataset.ready === "true", undefined, 10000);
    await page.waitForSelector("#session-card:not([hidden])");
    assert.equal((await claims(page)).sid, before);
    assert.match(await logText(page), /restored: at-\d+ from localStorage/);
  });

  await t.test("a second tab shows the same session and follows refreshes", async () => {
    second = await context.newPage();
    await open(second);
    await second.waitForSelector("#session-card:not([hidden])");
    assert.equal((await claims(second)).jti, (await claims(page)).jti);
    await page.click("#refresh-now");
    const synced = await until(async () => (await claims(second)).jti === (await claims(page)).jti && (await logText(second)).includes("tokens:"), 3000);
    assert.ok(synced, "the second tab picked up the refreshed token");
    await shot(second, "5-second-tab");
  });

  await t.test("a failing refresh recovers by itself", async () => {
    const before = (await family(sid)).refreshes;
    await page.click('button[data-fault="503"]');
    await until(async () => (await logText(page)).includes("fault: the next refresh will get: 503"));
    await page.click("#refresh-now");
    const failed = await until(async () => /refreshError: Tessera: refresh failed: the token endpoint answered HTTP 503; retrying in \d+ s/.test(await logText(page)), 3000);
    assert.ok(failed, "the transient failure was shown");
    await shot(page, "6-refresh-failed");
    assert.equal(await page.text("#status"), "signed in", "tokens kept");
    const recovered = await until(async () => (await family(sid)).refreshes > before, 5000, 200);
    assert.ok(recovered, "the retry refreshed the token");
    await until(async () => (await logText(page)).split("\n")[0].includes("tokens:"), 2000);
    await shot(page, "7-recovered");
  });

  await t.test("a revoked access token: 401, one refresh, replay", async () => {
    const before = (await family(sid)).refreshes;
    await page.click("#revoke-access");
    await until(async () => (await logText(page)).includes("revoked at-"));
    await page.click("#call-api");
    await until(async () => (await page.text("#api-result")).startsWith("HTTP"), 5000);
    assert.match(await page.text("#api-result"), /^HTTP 200/);
    assert.equal((await family(sid)).refreshes, before + 1);
  });

  await t.test("sign out in one tab signs out both", async () => {
    await second.click("#signout");
    await page.waitForSelector("#signin-card:not([hidden])", 3000);
    await second.waitForSelector("#signin-card:not([hidden])");
    assert.match(await logText(page), /logout: signed out in another tab/);
    assert.equal((await family(sid)).revoked, true, "revoked at the server");
    await shot(page, "8-signed-out-everywhere");
  });

  await t.test("phone-sized viewport", async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 } });
    const p = await phone.newPage();
    await open(p);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "no horizontal scrolling on a phone");
    await shot(p, "9-phone");
    await phone.close();
  });
});

test("the demo against a backend that is not an OAuth server", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const p = await ctx.newPage();
  await open(p);
  await p.evaluate(() => localStorage.clear());
  await p.click('input[name="backend"][value="app"]');
  await until(async () => (await logText(p)).includes("now the JSON API"));
  await p.fill('input[name="username"]', "shop-user");
  await p.select('select[name="ttl"]', "30");
  await p.click("#signin-button");
  await p.waitForSelector("#session-card:not([hidden])");
  assert.equal((await claims(p)).sub, "shop-user");
  const device = await p.text("#device-id");
  assert.match(device, /^[A-Za-z0-9_-]{22,}$/, "the device id is shown");

  await p.click("#call-api");
  await until(async () => (await p.text("#api-result")).startsWith("HTTP"));
  assert.match(await p.text("#api-result"), /"code":200/);
  assert.match(await p.text("#api-result"), new RegExp(`"device":"${device}"`), "the device id reached the API");

  // A refused token comes back as HTTP 200 {"code": 403}: one refresh, one replay.
  const sid = (await claims(p)).sid;
  await p.click("#revoke-access");
  await until(async () => (await logText(p)).includes("revoked"));
  await p.click("#call-api");
  await until(async () => /"code":200/.test(await p.text("#api-result")) && (await family(sid)).refreshes === 1, 5000);
  assert.equal((await family(sid)).refreshes, 1);

  // An order whose answer is lost is made once, and the page gets it.
  const before = (await (await fetch(`${AUTH}/test/orders`)).json()).count;
  await p.click("#lose-order");
  await until(async () => (await logText(p)).includes("answer is lost"));
  await p.click("#place-order");
  await until(async () => (await logText(p)).includes("/app/orders answered"), 8000);
  assert.match(await p.text("#api-result"), /^HTTP 200/);
  assert.match(await p.text("#api-result"), /"created":false/);
  assert.equal((await (await fetch(`${AUTH}/test/orders`)).json()).count, before + 1, "made once");
  await shot(p, "10-json-api");
  await p.click("#signout");
  await p.waitForSelector("#signin-card:not([hidden])");
  await p.click('input[name="backend"][value="oauth"]');
  await ctx.close();
});
