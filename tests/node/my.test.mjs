// Alipay: the package loaded from its bytes through the runtime's
// WebAssembly (Alipay documents no path loader); the my adapters, with
// Alipay's shapes (one-object storage calls, `headers`/`status`, HTTP errors
// through fail), against the local auth server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTH, becomeMiniProgram, hostFlows, makeHost , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ keepWebAssembly: true });
const my = await import(adapterUrl("my"));
const load = () => my.loadMy(runtime.wasmBytes());

hostFlows({ test, kind: "my", adapters: { storage: my.myStorage, fetch: my.myFetch, lifecycle: my.myLifecycle }, load });

test("my: a path is refused with what to do instead; HTTP errors reported through fail are answers", async () => {
  await assert.rejects(my.loadMy("/tessera/tessera_bg.wasm"), /no path-based WebAssembly loader; pass the wasm bytes/);
  const host = makeHost("my");
  const r = await my.myFetch(host)(AUTH + "/oauth/token", { method: "POST", body: "grant_type=refresh_token&refresh_token=nope&client_id=tessera-demo", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error, "invalid_grant");
});
