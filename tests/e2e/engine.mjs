// One small adapter over three browser engines, so every end-to-end test is
// written once and runs in each: Chromium through playwright-core, Firefox
// through puppeteer-core over WebDriver BiDi, WebKit (WebKitGTK's
// MiniBrowser, the engine of Safari and every iOS webview) through
// WebKitWebDriver over plain WebDriver HTTP. All three browsers come from
// Debian's packages; nothing is downloaded.
//
// The surface is what the tests use:
//   const browser = await launch();            // TESSERA_ENGINE picks the engine
//   const context = await browser.newContext({ viewport });   // pages share storage
//   const page = await context.newPage();
//   await page.goto(url); await page.reload();
//   await page.evaluate(fn, arg);               // fn runs in the page; JSON in, JSON out
//   await page.waitFor(fn, arg, ms);            // until fn(arg) is truthy in the page
//   await page.waitForSelector(css, ms);        // until a visible element matches
//   await page.click(css); await page.fill(css, value); await page.select(css, value);
//   await page.text(css);                       // innerText
//   const popup = await page.open(url);         // window.open from the page (an opener tab)
//   await page.screenshot(path);
//   await context.close(); await browser.close();
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { writeFileSync } from "node:fs";

export const ENGINE = process.env.TESSERA_ENGINE || "chromium";

/** Starts `engine` (by default the one TESSERA_ENGINE names). */
export function launch(engine = ENGINE) {
  switch (engine) {
    case "chromium":
      return launchChromium();
    case "firefox":
      return launchFirefox();
    case "webkit":
      return launchWebKit();
    default:
      throw new Error(`TESSERA_ENGINE must be chromium, firefox or webkit, not ${engine}`);
  }
}

const pollUntil = async (check, ms, what) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

// In-page helpers shared by the puppeteer and WebDriver backends (playwright
// has its own): they run as page functions.
const inPage = {
  visible: (css) => {
    const el = document.querySelector(css);
    return !!el && !el.closest("[hidden]") && el.getClientRects().length > 0;
  },
  click: (css) => {
    const el = document.querySelector(css);
    if (!el) throw new Error("no element " + css);
    el.click();
  },
  fill: ([css, value]) => {
    const el = document.querySelector(css);
    el.value = value;
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  },
  text: (css) => document.querySelector(css).innerText,
};

// ---- Chromium: playwright-core ------------------------------------------------

async function launchChromium() {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--disable-popup-blocking"],
  });
  const wrap = (p, context) => ({
    raw: p,
    goto: (url) => p.goto(url),
    reload: () => p.reload(),
    evaluate: (fn, arg) => p.evaluate(fn, arg),
    waitFor: (fn, arg, ms = 5000) => p.waitForFunction(fn, arg, { timeout: ms }),
    waitForSelector: (css, ms = 5000) => p.waitForSelector(css, { timeout: ms, state: "visible" }),
    click: (css) => p.click(css),
    fill: (css, v) => p.fill(css, v),
    select: (css, v) => p.selectOption(css, v),
    text: (css) => p.locator(css).innerText(),
    screenshot: (path) => p.screenshot({ path, fullPage: true }),
    open: async (url) => {
      const [popup] = await Promise.all([context.waitForEvent("page"), p.evaluate((u) => { window.open(u); }, url)]);
      await popup.waitForLoadState();
      return wrap(popup, context);
    },
    close: () => p.close(),
  });
  return {
    name: "chromium",
    version: browser.version(),
    newContext: async ({ viewport } = {}) => {
      const c = await browser.newContext(viewport ? { viewport } : {});
      return { newPage: async () => wrap(await c.newPage(), c), close: () => c.close() };
    },
    close: () => browser.close(),
  };
}

// ---- Firefox: puppeteer-core over WebDriver BiDi ------------------------------

async function launchFirefox() {
  const puppeteer = (await import("puppeteer-core")).default;
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
    headless: true,
    extraPrefsFirefox: { "dom.disable_open_during_load": false, "browser.sessionstore.resume_from_crash": false },
  });
  const version = await browser.version();
  const wrap = (p, context) => ({
    raw: p,
    goto: (url) => p.goto(url),
    reload: () => p.reload(),
    evaluate: (fn, arg) => p.evaluate(fn, arg),
    waitFor: (fn, arg, ms = 5000) => p.waitForFunction(fn, { timeout: ms, polling: 50 }, arg),
    waitForSelector: (css, ms = 5000) => p.waitForFunction(inPage.visible, { timeout: ms, polling: 50 }, css),
    click: (css) => p.evaluate(inPage.click, css),
    fill: (css, v) => p.evaluate(inPage.fill, [css, v]),
    select: (css, v) => p.evaluate(inPage.fill, [css, v]),
    text: (css) => p.evaluate(inPage.text, css),
    screenshot: (path) => p.screenshot({ path, fullPage: true }),
    open: async (url) => {
      // BiDi targets do not say their opener: the new window is the page
      // target that was not there before.
      const known = new Set(context.targets());
      const target = context.waitForTarget((t) => t.type() === "page" && !known.has(t), { timeout: 10000 });
      await p.evaluate((u) => { window.open(u); }, url);
      const popup = await (await target).page();
      await popup.waitForFunction(() => document.readyState === "complete");
      return wrap(popup, context);
    },
    close: () => p.close(),
  });
  return {
    name: "firefox",
    version,
    newContext: async ({ viewport } = {}) => {
      const c = await browser.createBrowserContext();
      return {
        newPage: async () => {
          const p = await c.newPage();
          if (viewport) await p.setViewport(viewport);
          return wrap(p, c);
        },
        close: () => c.close(),
      };
    },
    close: () => browser.close(),
  };
}

// ---- WebKit: WebKitWebDriver over plain WebDriver HTTP ------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts WebKitWebDriver on a free port; `call` speaks WebDriver to it. */
async function startDriver() {
  const port = await freePort();
  const driver = spawn(process.env.WEBKIT_DRIVER || "/usr/bin/WebKitWebDriver", [`--port=${port}`, "--host=127.0.0.1"], { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, path, body) => {
    const r = await fetch(base + path, { method, headers: { "Content-Type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`WebDriver ${method} ${path}: ${r.status} ${JSON.stringify(json.value || json).slice(0, 300)}`);
    return json.value;
  };
  await pollUntil(async () => fetch(base + "/status").then((r) => r.ok, () => false), 10000, "WebKitWebDriver to start");
  return { call, kill: () => driver.kill() };
}

/** A minimal W3C WebDriver client: enough for the tests, nothing more.
 *  WebKitWebDriver serves one session at a time, so every context (a browser
 *  with its own storage) has its own driver. */
async function launchWebKit() {
  let version = "";
  const open = new Set();
  const newContext = async ({ viewport } = {}) => {
    const { call, kill } = await startDriver();
    const caps = await call("POST", "/session", {
      capabilities: { alwaysMatch: { browserName: "MiniBrowser", "webkitgtk:browserOptions": { args: ["--automation", "--javascript-can-open-windows-automatically=true"] } } },
    });
    const sid = caps.sessionId;
    version = caps.capabilities.browserVersion;
    const closeContext = async () => {
      open.delete(closeContext);
      await call("DELETE", `/session/${sid}`).catch(() => {});
      kill();
    };
    open.add(closeContext);
    const s = (path) => `/session/${sid}${path}`;
    if (viewport) await call("POST", s("/window/rect"), { width: viewport.width, height: viewport.height + 80 });
    let current = await call("GET", s("/window"));
    let first = true;
    const use = async (handle) => {
      if (current !== handle) {
        await call("POST", s("/window"), { handle });
        current = handle;
      }
    };
    const exec = async (handle, fn, arg) => {
      await use(handle);
      const script = `const done = arguments[arguments.length - 1];
        Promise.resolve().then(() => (${fn})(arguments[0])).then(
          (v) => done(v === undefined ? { undef: true } : { ok: v }),
          (e) => done({ err: String(e && e.stack || e) }));`;
      const r = await call("POST", s("/execute/async"), { script, args: [arg === undefined ? null : arg] });
      if (r && "err" in r) throw new Error(r.err);
      return r && r.undef ? undefined : r ? r.ok : r;
    };
    const wrap = (handle) => {
      const page = {
        raw: handle,
        goto: async (url) => { await use(handle); await call("POST", s("/url"), { url }); },
        reload: async () => { await use(handle); await call("POST", s("/refresh"), {}); },
        evaluate: (fn, arg) => exec(handle, fn, arg),
        waitFor: (fn, arg, ms = 5000) => pollUntil(() => exec(handle, fn, arg).catch(() => false), ms, String(fn).slice(0, 80)),
        waitForSelector: (css, ms = 5000) => pollUntil(() => exec(handle, inPage.visible, css).catch(() => false), ms, css),
        click: (css) => exec(handle, inPage.click, css),
        fill: (css, v) => exec(handle, inPage.fill, [css, v]),
        select: (css, v) => exec(handle, inPage.fill, [css, v]),
        text: (css) => exec(handle, inPage.text, css),
        screenshot: async (path) => {
          // The whole page, as the other engines take it: WebDriver's
          // screenshot is the viewport, so the window grows to the page.
          const height = await exec(handle, () => document.documentElement.scrollHeight);
          const rect = await call("GET", s("/window/rect"));
          const inner = await exec(handle, () => window.innerHeight);
          if (height > inner) await call("POST", s("/window/rect"), { width: rect.width, height: rect.height + height - inner });
          writeFileSync(path, Buffer.from(await call("GET", s("/screenshot")), "base64"));
          if (height > inner) await call("POST", s("/window/rect"), { width: rect.width, height: rect.height });
        },
        open: async (url) => {
          const before = new Set(await call("GET", s("/window/handles")));
          await exec(handle, (u) => { window.open(u); }, url);
          let popup;
          await pollUntil(async () => {
            popup = (await call("GET", s("/window/handles"))).find((h) => !before.has(h));
            return popup;
          }, 10000, "the opened window");
          const p = wrap(popup);
          await p.waitFor(() => document.readyState === "complete", undefined, 10000);
          return p;
        },
        close: async () => { await use(handle); await call("DELETE", s("/window")); current = null; },
      };
      return page;
    };
    return {
      newPage: async () => {
        if (first) {
          first = false;
          return wrap(current);
        }
        // A window, not a tab: WebKitGTK does not paint a background tab,
        // and a screenshot of one never returns.
        const w = await call("POST", s("/window/new"), { type: "window" });
        return wrap(w.handle);
      },
      close: closeContext,
    };
  };
  // A first context tells the engine's version.
  const probe = await newContext();
  await probe.close();
  return {
    name: "webkit",
    version,
    newContext,
    close: async () => {
      for (const close of [...open]) await close();
    },
  };
}
