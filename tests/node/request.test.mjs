// The mini-program transports given a `Request` (uni-app and Taro H5 builds
// have one, and Tessera hands them Requests there): method, headers (the
// Authorization among them) and body come from the Request, `init` still
// overrides, and the signal is the Request's. Node has Request, as those
// builds do. (R8 of the second session review.)
import { test } from "node:test";
import assert from "node:assert/strict";

const pkg = new URL("../../pkg/", import.meta.url);
const uni = await import(new URL("adapters/uni.js", pkg).href);

/** A uni.request that records what it was asked and answers 200. */
function fakeUni() {
  const seen = [];
  return {
    seen,
    request(o) {
      seen.push({ url: o.url, method: o.method, header: o.header, data: o.data });
      setTimeout(() => o.success({ statusCode: 200, header: {}, data: "ok" }), 0);
      return { abort() {} };
    },
  };
}

test("a Request keeps its method, headers and body", async () => {
  const api = fakeUni();
  const fetchLike = uni.uniFetch(api);
  const req = new Request("https://api.example.com/orders", {
    method: "POST",
    headers: { Authorization: "Bearer at1", "Content-Type": "application/json" },
    body: '{"item":1}',
  });
  const r = await fetchLike(req, undefined);
  assert.equal(r.status, 200);
  const [sent] = api.seen;
  assert.equal(sent.method, "POST");
  assert.equal(sent.header.Authorization, "Bearer at1", "named as hosts and their mocks look it up");
  assert.equal(sent.header["Content-Type"], "application/json");
  assert.equal(sent.data, '{"item":1}');
  assert.equal(sent.url, "https://api.example.com/orders");
});

test("init overrides the Request, as in fetch", async () => {
  const api = fakeUni();
  const req = new Request("https://api.example.com/a", { method: "POST", body: "x", headers: { "X-A": "1" } });
  await uni.uniFetch(api)(req, { method: "PUT", headers: { "X-B": "2" }, body: "y" });
  const [sent] = api.seen;
  assert.equal(sent.method, "PUT");
  assert.equal(sent.data, "y");
  assert.deepEqual(Object.keys(sent.header).map((k) => k.toLowerCase()), ["x-b"]);
});

test("a Request's signal aborts it", async () => {
  const api = fakeUni();
  const c = new AbortController();
  c.abort();
  const req = new Request("https://api.example.com/a", { signal: c.signal });
  await assert.rejects(uni.uniFetch(api)(req), { name: "AbortError" });
  assert.equal(api.seen.length, 0);
});

test("a string input still takes everything from init", async () => {
  const api = fakeUni();
  await uni.uniFetch(api)("https://api.example.com/a", { method: "delete", headers: [["X-C", "3"]] });
  assert.equal(api.seen[0].method, "DELETE");
  assert.equal(api.seen[0].header["X-C"], "3");
});
