// Completes wasm-pack's pkg/ into the npm package users install: exports,
// module/types fields, sideEffects, the mini-program adapters and the
// brotli-compressed wasm they load, README, LICENSE.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { brotliCompressSync, constants } from "node:zlib";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = resolve(root, process.argv[2] || "pkg");
const pkgJson = join(pkgDir, "package.json");
const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));

mkdirSync(join(pkgDir, "adapters"), { recursive: true });
const hosts = ["mp", "wx", "my", "tt", "uni", "taro"];
for (const h of hosts) {
  for (const f of [h + ".js", h + ".d.ts"]) copyFileSync(join(root, "js/adapters", f), join(pkgDir, "adapters", f));
}
// WeChat and Douyin load `.wasm.br` from a code package (base library 2.14 /
// 2.92): the package counts toward the 2 MB limit compressed.
const wasm = readFileSync(join(pkgDir, "tessera_bg.wasm"));
writeFileSync(
  join(pkgDir, "tessera_bg.wasm.br"),
  brotliCompressSync(wasm, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: wasm.length } }),
);
copyFileSync(join(root, "README.md"), join(pkgDir, "README.md"));
copyFileSync(join(root, "LICENSE"), join(pkgDir, "LICENSE"));

Object.assign(pkg, {
  module: "tessera.js",
  types: "tessera.d.ts",
  exports: {
    ".": { types: "./tessera.d.ts", default: "./tessera.js" },
    ...Object.fromEntries(
      hosts.filter((h) => h !== "mp").map((h) => ["./" + h, { types: `./adapters/${h}.d.ts`, default: `./adapters/${h}.js` }]),
    ),
    "./tessera_bg.wasm": "./tessera_bg.wasm",
    "./tessera_bg.wasm.br": "./tessera_bg.wasm.br",
    "./package.json": "./package.json",
  },
  // Importing runs nothing: init() does the work.
  sideEffects: false,
  files: ["tessera_bg.wasm", "tessera_bg.wasm.br", "tessera.js", "tessera.d.ts", "adapters/", "README.md", "LICENSE"],
  engines: { node: ">=18" },
});
writeFileSync(pkgJson, JSON.stringify(pkg, null, 2) + "\n");
console.log("completed " + pkgJson);
