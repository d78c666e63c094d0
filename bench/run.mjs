// Tessera's benchmarks: one table, also written as JSON to bench/results/.
// Run through `./dev bench`, which builds the release package and starts
// the local auth server with cross-origin isolation (5 µs timers).
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { gzipSync } from "node:zlib";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "..");
const AUTH = process.env.TESSERA_AUTH_URL || "http://127.0.0.1:18787";
const quick = process.env.BENCH_QUICK === "1";
const gz = (buf) => gzipSync(buf, { level: 9 }).length;

async function bundle(source) {
  const r = await build({
    stdin: { contents: source, resolveDir: here, loader: "js" },
    bundle: true, minify: true, format: "esm", platform: "browser", write: false, logLevel: "silent",
    define: { "process.env.NODE_ENV": '"production"' },
  });
  return r.outputFiles[0].contents;
}

const version = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version;

async function sizes() {
  const peers = [
    ["keycloak-js", `import K from "keycloak-js"; globalThis.x = K;`, ["keycloak-js"]],
    ["oidc-client-ts", `import * as m from "oidc-client-ts"; globalThis.x = m;`, ["oidc-client-ts"]],
    ["@supabase/auth-js", `import * as m from "@supabase/auth-js"; globalThis.x = m;`, ["@supabase/auth-js"]],
    ["axios + axios-auth-refresh", `import a from "axios"; import r from "axios-auth-refresh"; globalThis.x = [a, r];`, ["axios", "axios-auth-refresh"]],
    ["@auth0/auth0-spa-js", `import * as m from "@auth0/auth0-spa-js"; globalThis.x = m;`, ["@auth0/auth0-spa-js"]],
    ["jwt-decode (decoding only)", `import { jwtDecode } from "jwt-decode"; globalThis.x = jwtDecode;`, ["jwt-decode"]],
  ];
  const out = [];
  const glue = await bundle(`import * as t from ${JSON.stringify(join(root, "pkg/tessera.js"))}; globalThis.x = t;`);
  const wasm = readFileSync(join(root, "pkg/tessera_bg.wasm"));
  out.push({ name: "tessera (wasm + glue)", versions: "this build", bytes: gz(wasm) + gz(glue), wasm: gz(wasm), glue: gz(glue) });
  for (const [name, src, pkgs] of peers) {
    out.push({ name, versions: pkgs.map((p) => `${p}@${version(p)}`).join(", "), bytes: gz(await bundle(src)) });
  }
  return out;
}

/** Start-up (import to a manager with stored tokens restored) in the other
 *  engines, driven through the end-to-end tests' engine adapter. */
async function startupIn(engines, loads) {
  const { launch } = await import("../tests/e2e/engine.mjs");
  const out = {};
  for (const engine of engines) {
    const browser = await launch(engine);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${AUTH}/bench/page.html`);
    await page.waitFor(() => window.benchReady === true, undefined, 20000);
    await page.evaluate(async () => {
      const { TokenManager } = await import("/pkg/tessera.js");
      const tm = new TokenManager({ storageKey: "bench-startup" });
      tm.setTokens({ access_token: "stored-token", token_type: "Bearer", expires_in: 3600 });
      tm.dispose();
    });
    const times = [];
    for (let i = 0; i < loads; i++) {
      await page.goto(`${AUTH}/bench/startup.html`);
      await page.waitFor(() => window.startupMs !== undefined, undefined, 20000);
      times.push(await page.evaluate(() => window.startupMs));
    }
    times.sort((a, b) => a - b);
    out[engine] = { medianMs: times[Math.floor(times.length / 2)], version: browser.version };
    await context.close();
    await browser.close();
  }
  return out;
}

async function main() {
  mkdirSync(join(here, "dist"), { recursive: true });
  writeFileSync(join(here, "dist/jwt-decode.js"), await bundle(`export { jwtDecode } from "jwt-decode";`));
  const size = await sizes();

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic", "--js-flags=--expose-gc", "--enable-precise-memory-info"],
  });
  const page = await browser.newPage();
  await page.goto(`${AUTH}/bench/page.html`);
  await page.waitForFunction(() => window.benchReady === true);
  const isolated = await page.evaluate(() => crossOriginIsolated);

  // Start-up: many page loads, stored tokens present.
  await page.evaluate(async () => {
    const { TokenManager } = await import("/pkg/tessera.js");
    const tm = new TokenManager({ storageKey: "bench-startup" });
    tm.setTokens({ access_token: "stored-token", token_type: "Bearer", expires_in: 3600 });
    tm.dispose();
  });
  const loads = quick ? 5 : 40;
  const startup = [];
  for (let i = 0; i < loads; i++) {
    await page.goto(`${AUTH}/bench/startup.html`);
    await page.waitForFunction(() => window.startupMs !== undefined);
    startup.push(await page.evaluate(() => window.startupMs));
  }
  startup.sort((a, b) => a - b);
  const startupElsewhere = await startupIn(["firefox", "webkit"], loads);
  await page.goto(`${AUTH}/bench/page.html`);
  await page.waitForFunction(() => window.benchReady === true);

  const tokenLength = await page.evaluate(() => window.bench.tokenLength());
  const decoding = await page.evaluate((n) => window.bench.decoding(n), quick ? 5000 : 50000);
  const overhead = await page.evaluate((n) => window.bench.overhead(n), quick ? 300 : 3000);
  const burst = await page.evaluate(() => window.bench.burst());
  const memory = await page.evaluate(([a, b]) => window.bench.memory(a, b), quick ? [1000, 10000] : [1000, 100000]);
  await browser.close();

  const total = size[0].bytes;
  const results = {
    date: new Date().toISOString(), chromium: browser.version?.() ?? "", crossOriginIsolated: isolated, quick,
    size, startup: { medianMs: startup[Math.floor(startup.length / 2)], loads, elsewhere: startupElsewhere },
    decoding: { ...decoding, tokenLength }, overhead, burst, memory,
  };
  const kb = (b) => (b / 1024).toFixed(1) + " KB";
  const memGrowth = (k) => memory.after100k[k] - memory.after1k[k];
  const targets = [
    ["size (wasm + glue, gzip)", kb(total), "<= 40 KB (aim 34)", total <= 40 * 1024],
    ["start-up, median of " + loads + " loads", startup[Math.floor(startup.length / 2)].toFixed(2) + " ms", "-", true],
    ...Object.entries(startupElsewhere).map(([engine, r]) => [`start-up in ${engine} ${r.version}, median of ${loads} loads`, r.medianMs.toFixed(2) + " ms", "-", true]),
    [`decoding (${tokenLength}-byte JWT), ops/s`, `${Math.round(decoding.tessera)} vs jwt-decode ${Math.round(decoding.jwtdecode)} (x${decoding.ratio.toFixed(2)})`, "ratio >= 1.0", decoding.ratio >= 1],
    ["tm.fetch vs fetch with the same Bearer header, local server, median", `${overhead.addedMedianUs >= 0 ? "+" : ""}${overhead.addedMedianUs.toFixed(0)} µs (p99 ${overhead.addedP99Us >= 0 ? "+" : ""}${overhead.addedP99Us.toFixed(0)} µs; requests take ${(overhead.bareAuth.median * 1000).toFixed(0)} µs)`, "< 50 µs", overhead.addedMedianUs < 50],
    ["the Bearer header itself (fetch with it vs without), median", `+${overhead.tokenMedianUs.toFixed(0)} µs`, "-", true],
    ["tm.fetch own time (instant transport), median", `+${overhead.ownMedianUs.toFixed(1)} µs (p99 +${overhead.ownP99Us.toFixed(0)} µs)`, "< 10 µs", overhead.ownMedianUs < 10],
    ["burst of 100 on an expired token", `${burst.refreshes} refresh, ${burst.ok}/100 ok, ${burst.burstMs.toFixed(1)} ms = x${burst.ratio.toFixed(2)} of refresh+request (${burst.singleMs.toFixed(1)} ms)`, "1 refresh, < x1.5", burst.refreshes === 1 && burst.ok === 100 && burst.ratio < 1.5],
    ["same burst vs refresh + 100 bare requests", `x${burst.ratioToBare.toFixed(2)} (bare 100: ${burst.bare100Ms.toFixed(1)} ms)`, "-", burst.refreshes === 1 && burst.ratioToBare < 1.5],
    ["memory growth 1k -> " + (quick ? "10k" : "100k") + " ops", `wasm +${kb(memGrowth("wasm"))}, JS heap +${kb(memGrowth("js"))}`, "noise only", memGrowth("wasm") === 0 && memGrowth("js") < 1024 * 1024],
  ];
  results.targets = targets.map(([what, measured, target, met]) => ({ what, measured, target, met }));

  console.log("\nSize, minified + gzipped (esbuild, gzip -9):");
  for (const s of size) console.log(`  ${s.name.padEnd(30)} ${kb(s.bytes).padStart(9)}  ${s.versions}${s.wasm ? `  (wasm ${kb(s.wasm)}, glue ${kb(s.glue)})` : ""}`);
  console.log("\n| measure | result | target | met |\n| --- | --- | --- | --- |");
  for (const [what, measured, target, met] of targets) console.log(`| ${what} | ${measured} | ${target} | ${met ? "yes" : "NO"} |`);
  mkdirSync(join(here, "results"), { recursive: true });
  const file = join(here, "results/latest.json");
  writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwritten: ${file}${isolated ? "" : "  (page not cross-origin isolated: 100 µs timers)"}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
