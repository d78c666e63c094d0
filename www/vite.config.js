import { defineConfig } from "vite";

// The package is a file dependency on ../pkg, as users would install it;
// Vite resolves its wasm through `new URL("tessera_bg.wasm", import.meta.url)`.
export default defineConfig({
  build: { target: "es2022" },
  server: { fs: { allow: [".."] } },
});
