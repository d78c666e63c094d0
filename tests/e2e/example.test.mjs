// The Rust frontend example (examples/signin: Tessera's Rust API, plain
// wasm-bindgen and web-sys), driven as a person would: sign in, call the
// API, watch the countdown and an automatic refresh, reload, sign out.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AUTH, ENGINE, launch, until, family, SHOTS } from "./lib.mjs";

let browser, page;

before(async () => {
  browser = await launch();
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  page = await context.newPage();
});
after(async () => {
  await browser?.close();
});

const ready = () => page.waitFor(() => document.body && document.body.dataset.ready === "true", undefined, 10000);
const claims = async () => JSON.parse((await page.text("#claims")) || "{}");
const seconds = async () => parseInt(await page.text("#countdown"), 10);

test(`the Rust frontend example, end to end (${ENGINE})`, async (t) => {
  let sid;

  await t.test("signed out at first", async () => {
    await page.goto(`${AUTH}/example/`);
    await ready();
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await ready();
    assert.equal(await page.text("#status"), "signed out");
  });

  await t.test("sign in", async () => {
    await page.fill('input[name="username"]', "rust-user");
    await page.select('select[name="ttl"]', "10");
    await page.click("#signin-button");
    await page.waitForSelector("#session-card:not([hidden])");
    assert.equal(await page.text("#status"), "signed in");
    const c = await claims();
    assert.equal(c.sub, "rust-user");
    sid = c.sid;
    assert.match(await page.text("#log"), /tokens: expire in (9|10) s/);
    await page.screenshot(`${SHOTS}/example-1-signed-in.png`);
  });

  await t.test("call the API through tm.fetch", async () => {
    await page.click("#call-api");
    await until(async () => (await page.text("#api-result")).startsWith("HTTP"));
    const out = await page.text("#api-result");
    assert.match(out, /^HTTP 200/);
    assert.match(out, /"sub":"rust-user"/);
  });

  await t.test("the countdown runs and the token refreshes by itself", async () => {
    const first = (await claims()).jti;
    const start = await until(seconds, 2000, 50);
    assert.ok(start > 0 && start <= 10, `countdown shows ${start} s`);
    assert.ok(await until(async () => (await seconds()) < start, 3000, 100), "the countdown goes down");
    assert.ok(await until(async () => (await claims()).jti !== first, 9000, 200), "a new token arrived without a click");
    assert.ok((await family(sid)).refreshes >= 1);
    assert.ok(await until(async () => (await seconds()) > 5, 2000, 100), "the countdown starts again");
    await page.screenshot(`${SHOTS}/example-2-refreshed.png`);
  });

  await t.test("a reload keeps the session", async () => {
    await page.reload();
    await ready();
    assert.equal(await page.text("#status"), "signed in");
    assert.equal((await claims()).sid, sid);
    assert.match(await page.text("#log"), /restored from localStorage/);
  });

  await t.test("sign out", async () => {
    await page.click("#signout");
    await until(async () => (await page.text("#status")) === "signed out");
    assert.equal(await page.text("#status"), "signed out");
    assert.match(await page.text("#log"), /logout: user/);
    assert.equal(await page.evaluate(() => localStorage.getItem("example-signin")), null);
    assert.ok(await until(async () => (await family(sid)).revoked, 3000), "the refresh token was revoked");
    await page.screenshot(`${SHOTS}/example-3-signed-out.png`);
  });
});
