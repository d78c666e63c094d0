// Shortens the names between tessera_bg.wasm and its glue (tessera.js):
// wasm-bindgen names every import `__wbg_<name>_<hash>` and every closure
// shim after its full Rust type, and each name is stored twice, in the wasm
// and in the glue. Measured: -2.9 KB gzipped (../shared/reviews/2026-11-24-size.md,
// lever f). wasm-opt renames them and prints the map; this script applies the
// map to the glue and to the `InitOutput` type, and fails the build if any
// name it expects is not where wasm-bindgen 0.2.130 puts it (the glue's shape
// is wasm-bindgen's, pinned by Cargo.lock: a new version is checked here
// before anything ships).
//
// Usage: node scripts/minify.mjs <pkg dir> <wasm-opt>
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [dir, wasmOpt] = process.argv.slice(2);
const wasmFile = join(dir, "tessera_bg.wasm");
const glueFile = join(dir, "tessera.js");
const typesFile = join(dir, "tessera.d.ts");
// The features wasm-bindgen's output uses; `--strip-target-features` has
// removed the section that would tell wasm-opt.
const features = ["bulk-memory", "nontrapping-float-to-int", "sign-ext", "mutable-globals", "reference-types", "multivalue"];
const out = execFileSync(
  wasmOpt,
  [wasmFile, ...features.map((f) => "--enable-" + f), "--minify-imports-and-exports-and-modules", "-o", wasmFile],
  { encoding: "utf8", maxBuffer: 1 << 24 },
);
const map = JSON.parse(out.slice(out.indexOf("{")));

const fail = (why) => {
  console.error("scripts/minify.mjs: " + why + " (has wasm-bindgen's glue changed?)");
  process.exit(1);
};
const escape = (s) => s.replace(/[$]/g, "$$$$");
let glue = readFileSync(glueFile, "utf8");
let types = readFileSync(typesFile, "utf8");

// Imports: the keys of the object wasm-bindgen hands to instantiate().
for (const [, from, to] of map.imports) {
  const key = new RegExp("^(\\s+)" + from + ": function\\(", "m");
  if (!key.test(glue)) fail("import " + from + " not found");
  glue = glue.replace(key, "$1" + escape(to) + ": function(");
}
const modules = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasmFile)));
const names = [...new Set(modules.map((i) => i.module))];
const from = [...new Set(map.imports.map((i) => i[0]))];
if (names.length !== 1 || from.length !== 1) fail("expected one import module, found " + names.join(", "));
const moduleKey = JSON.stringify(from[0]) + ": import0";
if (!glue.includes(moduleKey)) fail("import module " + from[0] + " not found");
glue = glue.replace(moduleKey, JSON.stringify(names[0]) + ": import0");

// Exports: every use is `wasm.<name>`; the types list them in InitOutput.
for (const [from, to] of map.exports) {
  const use = new RegExp("\\bwasm\\." + from + "\\b", "g");
  if (!use.test(glue) && !["__wbindgen_start", "__abort_handler", "__instance_terminated"].includes(from)) {
    fail("export " + from + " not used by the glue");
  }
  glue = glue.replace(use, "wasm." + escape(to));
  types = types.replace(new RegExp("(readonly )" + from + "\\b"), "$1" + escape(to));
}
// Hosts without TextDecoder/TextEncoder (some mini-program engines) must be
// able to import the glue: it makes both at import time. Guard them, and add
// `initWith`, the door the mini-program loaders (js/adapters/mp.js) use to
// instantiate through WXWebAssembly/TTWebAssembly and hand in a UTF-8 codec.
// Web apps pay about 0.1 KB gzipped for it; the codec itself is in mp.js.
const rewrites = [
  [
    "let cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });\ncachedTextDecoder.decode();",
    "let cachedTextDecoder = typeof TextDecoder < \"u\" && new TextDecoder('utf-8', { ignoreBOM: true });\ncachedTextDecoder && cachedTextDecoder.decode();",
  ],
  ["const MAX_SAFARI_DECODE_BYTES = 2146435072;", "const MAX_SAFARI_DECODE_BYTES = typeof TextDecoder < \"u\" ? 2146435072 : Infinity;"],
  [
    "const cachedTextEncoder = new TextEncoder();\n\nif (!('encodeInto' in cachedTextEncoder)) {",
    "let cachedTextEncoder = typeof TextEncoder < \"u\" && new TextEncoder();\n\nif (cachedTextEncoder && !('encodeInto' in cachedTextEncoder)) {",
  ],
  [
    "export { initSync, __wbg_init as default };",
    `export async function initWith(instantiate, utf8) {
    cachedTextDecoder = cachedTextDecoder || utf8;
    cachedTextEncoder = cachedTextEncoder || utf8;
    if (wasm === undefined) {
        const r = await instantiate(__wbg_get_imports());
        if (wasm === undefined) __wbg_finalize_init(r.instance || r, r.module);
    }
    return wasm;
}

export { initSync, __wbg_init as default };`,
  ],
];
for (const [from, to] of rewrites) {
  if (!glue.includes(from)) fail("expected glue not found: " + from.split("\n")[0]);
  glue = glue.replace(from, () => to);
}
types += `
/** Instantiates through a host's own loader (the mini-program adapters use it): \`instantiate(imports)\` resolves to \`{ instance, module }\` or an instance; \`utf8\` stands in for a missing TextDecoder/TextEncoder. */
export function initWith(
  instantiate: (imports: WebAssembly.Imports) => Promise<WebAssembly.WebAssemblyInstantiatedSource | WebAssembly.Instance>,
  utf8?: { decode(bytes?: Uint8Array): string; encode(s: string): Uint8Array; encodeInto(s: string, view: Uint8Array): { read: number; written: number } },
): Promise<InitOutput>;
`;
// Comments out of the glue: the JSDoc of every method is in tessera.d.ts,
// where editors and TypeScript read it, and wasm-bindgen's own notes are
// for its developers. Whole comment lines only, so no string is touched;
// a page that loads the glue without a minifier saves their bytes.
const lines = glue.split("\n");
let inDoc = false;
glue = lines
  .filter((line) => {
    const t = line.trim();
    if (inDoc) {
      inDoc = !t.endsWith("*/");
      return false;
    }
    if (t.startsWith("/**")) {
      inDoc = !t.endsWith("*/");
      return false;
    }
    return !t.startsWith("//");
  })
  .join("\n");
if (inDoc) fail("a doc comment in the glue does not end");
writeFileSync(glueFile, glue);
writeFileSync(typesFile, types);
// wasm-pack's typing of the raw exports would now name what no longer exists.
rmSync(join(dir, "tessera_bg.wasm.d.ts"), { force: true });
console.log(`minified ${map.imports.length} import and ${map.exports.length} export names`);
