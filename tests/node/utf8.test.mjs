// The UTF-8 fallback the mini-program loaders hand the glue where
// TextDecoder/TextEncoder are missing: it must agree with them.
import { test } from "node:test";
import assert from "node:assert/strict";

// mp.js imports the glue, which imports nothing at load time.
const { utf8 } = await import(new URL("../../pkg/adapters/mp.js", import.meta.url).href);
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { ignoreBOM: true });

function randomString(n, seed) {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8);
  let s = "";
  for (let i = 0; i < n; i++) {
    const k = next() % 6;
    s += k === 0 ? String.fromCharCode(next() % 0x80)
      : k === 1 ? String.fromCharCode(0x80 + (next() % 0x780))
      : k === 2 ? String.fromCharCode(0x800 + (next() % 0xd000))
      : k === 3 ? String.fromCodePoint(0x10000 + (next() % 0xfffff))
      : k === 4 ? String.fromCharCode(0xd800 + (next() % 0x800)) // a lone surrogate
      : "\ufeff";
  }
  return s;
}

test("utf8 encodes like TextEncoder (lone surrogates become U+FFFD) and decodes like TextDecoder", () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const s = randomString(seed % 40, seed);
    const bytes = enc.encode(s);
    assert.deepEqual(utf8.encode(s), bytes, JSON.stringify(s));
    assert.equal(utf8.decode(bytes), dec.decode(bytes));
    // encodeInto stops at a character boundary when the view is short.
    const view = new Uint8Array(seed % 17);
    const got = utf8.encodeInto(s, view);
    const want = enc.encodeInto(s, new Uint8Array(seed % 17));
    assert.deepEqual(got, want);
  }
  assert.equal(utf8.decode(), "", "decode() with nothing, as the glue calls it");
});
