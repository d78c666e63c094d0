// In-page benchmarks, called by bench/run.mjs through playwright.
import init, { TokenManager } from "/pkg/tessera.js";
import { jwtDecode } from "/bench/dist/jwt-decode.js";

const wasm = await init();
const b64 = (o) => btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(o)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** k distinct, realistic ~800-byte JWTs (an IdP's access token with roles and scopes). */
function tokens(k) {
  const out = [];
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < k; i++) {
    const claims = {
      iss: "https://login.example.com/realms/acme", sub: "f3c2a8e4-1b6d-4a53-9c0e-" + String(100000000000 + i),
      aud: "api://orders", exp: now + 3600, iat: now, jti: "j" + i + Math.random().toString(36).slice(2, 10),
      scope: "openid profile email orders.read", roles: ["user", "orders-admin"], name: "Zoë Example",
    };
    const t = b64({ alg: "RS256", typ: "JWT", kid: "k1" }) + "." + b64(claims) + "." + "s".repeat(342);
    out.push(t);
  }
  return out;
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p99: q(0.99), n: s.length };
}

/** Signs in at the local auth server: a token response for an hour. */
async function login(user) {
  const body = new URLSearchParams({ grant_type: "password", username: user, password: "password", client_id: "tessera-demo", ttl: "3600" });
  return (await fetch("/oauth/token", { method: "POST", body })).json();
}

window.bench = {
  tokenLength: () => tokens(1)[0].length,

  decoding(iterations) {
    const list = tokens(64);
    const tm = new TokenManager({ storage: "memory", autoRefresh: false, syncTabs: false });
    let sink = 0;
    const run = (f) => {
      for (let i = 0; i < 2000; i++) f(i); // warm-up
      const t0 = performance.now();
      for (let i = 0; i < iterations; i++) f(i);
      return iterations / ((performance.now() - t0) / 1000);
    };
    const tessera = run((i) => {
      tm.setTokens({ access_token: list[i & 63], token_type: "Bearer", expires_in: 3600 });
      sink += tm.claims.exp + tm.expiresAt;
    });
    const jwtdecode = run((i) => {
      const c = jwtDecode(list[i & 63]);
      sink += c.exp;
    });
    tm.dispose();
    return { tessera, jwtdecode, ratio: tessera / jwtdecode, sink: sink > 0 };
  },

  async overhead(n) {
    const tokens = await login("bench");
    const tm = new TokenManager({ storage: "memory", syncTabs: false });
    tm.setTokens(tokens);
    // `fetch` alone, `fetch` carrying the same Bearer header by hand (the
    // same bytes on the wire and the same work at the server: what Tessera
    // itself adds is the gap to this one), and `tm.fetch`.
    const auth = { headers: { Authorization: "Bearer " + tm.accessToken } };
    const bare = [], bareAuth = [], managed = [];
    for (let i = 0; i < 50; i++) {
      await (await fetch("/api/echo")).text();
      await (await fetch("/api/echo", auth)).text();
      await (await tm.fetch("/api/echo")).text();
    }
    // Interleaved, so drift in the server or the machine hits all alike.
    for (let i = 0; i < n; i++) {
      let t = performance.now();
      await (await fetch("/api/echo")).text();
      bare.push(performance.now() - t);
      t = performance.now();
      await (await fetch("/api/echo", auth)).text();
      bareAuth.push(performance.now() - t);
      t = performance.now();
      await (await tm.fetch("/api/echo")).text();
      managed.push(performance.now() - t);
    }
    tm.dispose();
    // The manager's own time, without the network's noise: the same calls
    // through a transport that answers at once.
    const canned = () => Promise.resolve(new Response("ok"));
    const quick = new TokenManager({ storage: "memory", syncTabs: false, fetch: canned, allowedOrigins: [location.origin] });
    quick.setTokens(tokens);
    const cpuBare = [], cpuManaged = [];
    for (let i = 0; i < n * 3; i++) {
      let t = performance.now();
      await canned("/api/echo");
      cpuBare.push(performance.now() - t);
      t = performance.now();
      await quick.fetch("/api/echo");
      cpuManaged.push(performance.now() - t);
    }
    quick.dispose();
    const a = stats(bare), h = stats(bareAuth), b = stats(managed), c = stats(cpuBare), d = stats(cpuManaged);
    return {
      bare: a, bareAuth: h, managed: b,
      addedMedianUs: (b.median - h.median) * 1000, addedP99Us: (b.p99 - h.p99) * 1000,
      tokenMedianUs: (h.median - a.median) * 1000,
      ownMedianUs: (d.median - c.median) * 1000, ownP99Us: (d.p99 - c.p99) * 1000,
      timerResolutionUs: crossOriginIsolated ? 5 : 100,
    };
  },

  async burst() {
    const options = { storage: "memory", syncTabs: false, tokenEndpoint: location.origin + "/oauth/token", clientId: "tessera-demo" };
    // Baseline: one refresh, then one request.
    const base = new TokenManager(options);
    base.setTokens(await login("burst-base"));
    let t = performance.now();
    await base.refresh();
    await (await base.fetch("/api/me")).text();
    const single = performance.now() - t;
    base.dispose();
    // 100 concurrent requests on an expired token.
    const tm = new TokenManager(options);
    const r = await login("burst");
    tm.setTokens({ ...r, expires_in: 0 });
    const sid = tm.claims.sid;
    t = performance.now();
    const results = await Promise.all(Array.from({ length: 100 }, () => tm.fetch("/api/me").then((x) => x.status)));
    const burst = performance.now() - t;
    const fam = await (await fetch("/test/family/" + sid)).json();
    // What the browser alone needs for 100 concurrent requests (HTTP/1.1: six
    // connections per origin), with a valid token and no manager at all.
    const auth = { headers: { Authorization: "Bearer " + tm.accessToken } };
    t = performance.now();
    await Promise.all(Array.from({ length: 100 }, () => fetch("/api/me", auth).then((x) => x.status)));
    const bare100 = performance.now() - t;
    tm.dispose();
    return { refreshes: fam.refreshes, ok: results.filter((s) => s === 200).length, burstMs: burst, singleMs: single, ratio: burst / single, bare100Ms: bare100, ratioToBare: burst / (single + bare100) };
  },

  async memory(small, large) {
    // The export names are minified (scripts/minify.mjs): find the memory by type.
    const memory = Object.values(wasm).find((v) => v instanceof WebAssembly.Memory);
    const heap = () => { window.gc?.(); window.gc?.(); return { wasm: memory.buffer.byteLength, js: performance.memory ? performance.memory.usedJSHeapSize : NaN }; };
    const ok = () => Promise.resolve(new Response("ok"));
    const tm = new TokenManager({ storage: "memory", syncTabs: false, fetch: ok, allowedOrigins: [location.origin] });
    const list = tokens(64);
    tm.setTokens({ access_token: list[0], token_type: "Bearer", expires_in: 3600 });
    const fetches = async (n) => {
      for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: 100 }, () => tm.fetch("/api/echo")));
    };
    const sets = (n) => {
      for (let i = 0; i < n; i++) tm.setTokens({ access_token: list[i & 63], token_type: "Bearer", expires_in: 3600 });
    };
    await fetches(small); sets(small);
    await new Promise((r) => setTimeout(r, 50));
    const after1k = heap();
    await fetches(large - small); sets(large - small);
    await new Promise((r) => setTimeout(r, 50));
    const after100k = heap();
    tm.dispose();
    return { after1k, after100k };
  },
};
window.benchReady = true;
