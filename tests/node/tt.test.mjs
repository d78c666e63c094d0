// Douyin: loadTt through TTWebAssembly and a path in the package; the tt
// adapters against the local auth server, with no web globals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { becomeMiniProgram, hostFlows , adapterUrl } from "./host.mjs";

const runtime = becomeMiniProgram({ loaderName: "TTWebAssembly" });
const tt = await import(adapterUrl("tt"));
const load = () => tt.loadTt("/tessera/tessera_bg.wasm");

hostFlows({ test, kind: "tt", adapters: { storage: tt.ttStorage, fetch: tt.ttFetch, lifecycle: tt.ttLifecycle }, load });

test("loadTt loads the plain .wasm from the package, once", async () => {
  await load();
  await load();
  assert.deepEqual(runtime.loads, ["/tessera/tessera_bg.wasm"]);
  await assert.rejects(tt.loadTt(""), /needs the path/);
});
