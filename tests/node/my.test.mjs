// Alipay: the package loaded from a path in the code package, read with
// my.getFileSystemManager() and instantiated through the runtime's
// WebAssembly (Alipay documents no path loader); the my adapters, with
// Alipay's shapes (one-object storage calls, `headers`/`status`, HTTP errors
// through fail), against the local auth server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTH, becomeMiniProgram, hostFlows, makeHost , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ keepWebAssembly: true });
const my = await import(adapterUrl("my"));
const host = makeHost("my");
const load = () => my.loadMy("/tessera/tessera_bg.wasm", host);

hostFlows({ test, kind: "my", adapters: { storage: my.myStorage, fetch: my.myFetch, lifecycle: my.myLifecycle }, load });

test("loadMy: a path in the package, or bytes; a path outside it or missing is a clear error; HTTP errors reported through fail are answers", async () => {
  assert.equal(typeof (await load()).TokenManager, "function");
  assert.equal(typeof (await my.loadMy(runtime.wasmBytes())).TokenManager, "function");
  await assert.rejects(my.loadMy("/../../etc/passwd", host), /loadMy could not read \/\.\.\/\.\.\/etc\/passwd: no permission/);
  await assert.rejects(my.loadMy("/tessera/missing.wasm", host), /no such file/);
  await assert.rejects(my.loadMy("/tessera/tessera_bg.wasm", {}), /needs the my object \(no my\.getFileSystemManager here\)/);
  const r = await my.myFetch(host)(AUTH + "/oauth/token", { method: "POST", body: "grant_type=refresh_token&refresh_token=nope&client_id=tessera-demo", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error, "invalid_grant");
});
