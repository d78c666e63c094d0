// Completes wasm-pack's pkg/ into the npm package users install: exports,
// module/types fields, sideEffects, the mini-program adapters, README, LICENSE.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = join(root, process.argv[2] || "pkg");
const pkgJson = join(pkgDir, "package.json");
const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));

mkdirSync(join(pkgDir, "adapters"), { recursive: true });
for (const f of ["wx.js", "wx.d.ts"]) copyFileSync(join(root, "js/adapters", f), join(pkgDir, "adapters", f));
copyFileSync(join(root, "README.md"), join(pkgDir, "README.md"));
copyFileSync(join(root, "LICENSE"), join(pkgDir, "LICENSE"));

Object.assign(pkg, {
  module: "tessera.js",
  types: "tessera.d.ts",
  exports: {
    ".": { types: "./tessera.d.ts", default: "./tessera.js" },
    "./wx": { types: "./adapters/wx.d.ts", default: "./adapters/wx.js" },
    "./tessera_bg.wasm": "./tessera_bg.wasm",
    "./package.json": "./package.json",
  },
  // Importing runs nothing: init() does the work.
  sideEffects: false,
  files: ["tessera_bg.wasm", "tessera.js", "tessera.d.ts", "adapters/", "README.md", "LICENSE"],
  engines: { node: ">=18" },
});
writeFileSync(pkgJson, JSON.stringify(pkg, null, 2) + "\n");
console.log("completed " + pkgJson);
