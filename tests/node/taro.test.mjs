// Taro compiled for Douyin: loadTaro finds TTWebAssembly; Taro.request is a
// promise with abort(). The taro adapters against the local auth server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { becomeMiniProgram, hostFlows , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ loaderName: "TTWebAssembly" });
const taro = await import(adapterUrl("taro"));
const load = () => taro.loadTaro("/tessera/tessera_bg.wasm.br");

hostFlows({ test, kind: "taro", adapters: { storage: taro.taroStorage, fetch: taro.taroFetch, lifecycle: taro.taroLifecycle }, load });

test("loadTaro picks the target's TTWebAssembly", async () => {
  await load();
  assert.deepEqual(runtime.loads, ["/tessera/tessera_bg.wasm.br"]);
});
