// uni-app compiled for WeChat: loadUni finds WXWebAssembly; the uni adapters
// against the local auth server, with no web globals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { becomeMiniProgram, hostFlows , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ loaderName: "WXWebAssembly" });
const uni = await import(adapterUrl("uni"));
const load = () => uni.loadUni("/tessera/tessera_bg.wasm.br");

hostFlows({ test, kind: "uni", adapters: { storage: uni.uniStorage, fetch: uni.uniFetch, lifecycle: uni.uniLifecycle }, load });

test("loadUni picks the target's WXWebAssembly", async () => {
  await load();
  assert.deepEqual(runtime.loads, ["/tessera/tessera_bg.wasm.br"]);
});
