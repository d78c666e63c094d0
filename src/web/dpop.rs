//! DPoP keys and proofs (RFC 9449) on WebCrypto and IndexedDB.
//!
//! The key is an ECDSA P-256 pair made with `crypto.subtle.generateKey` and
//! `extractable: false`: page script can use it while it runs but never read
//! it out, so a token copied out of storage is worthless elsewhere. It is
//! kept in IndexedDB (a `CryptoKeyPair` is stored as is) under the storage
//! key and its thumbprint, so every tab of its session finds it and a
//! reload keeps it; with `storage: "memory"` it lives in memory only. Each
//! session has its own key (see [`load`]); a logout deletes it.
//!
//! Everything goes through `js::get` and `js::invoke`/`js::call` rather than web-sys's
//! IndexedDB and SubtleCrypto bindings: a few calls, not their bytes.

use js_sys::Promise;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::error::Error;
use super::js::{self, call, invoke};
use crate::core::dpop;
use crate::core::jwt::base64url_encode as b64;

const DB: &str = "tessera-dpop";
const STORE: &str = "keys";

/// What a host must have for `dpop: true`; `Err` names what is missing.
pub fn available(in_memory: bool) -> Result<(), &'static str> {
    let g: JsValue = js::global().into();
    if js::get(&js::get(&g, "crypto"), "subtle").is_undefined() {
        return Err("option `dpop` needs crypto.subtle (WebCrypto, https), which this host lacks");
    }
    if !in_memory && js::method(&js::get(&g, "indexedDB"), "open").is_none() {
        return Err("option `dpop` needs indexedDB to keep its key (or storage: \"memory\"), which this host lacks");
    }
    Ok(())
}

/// A JS value from constant JSON text.
fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap_or(JsValue::UNDEFINED)
}

fn subtle() -> JsValue {
    js::get(&js::get(&js::global().into(), "crypto"), "subtle")
}

/// Settles when an IndexedDB request does (its `result` is then read off
/// the request). With `upgrade` the request is an `open`, and an
/// `upgradeneeded` settles it too, so the caller can create the store.
fn done(req: &JsValue, upgrade: bool) -> JsFuture {
    JsFuture::from(Promise::new(&mut |resolve, reject| {
        let _ = js_sys::Reflect::set(req, &"onsuccess".into(), &resolve);
        let _ = js_sys::Reflect::set(req, &"onerror".into(), &reject);
        if upgrade {
            let _ = js_sys::Reflect::set(req, &"onupgradeneeded".into(), &resolve);
        }
    }))
}

/// Runs `op` (`put`, `get`, `delete`) on the key store.
async fn store(op: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let open = invoke(&js::get(&js::global().into(), "indexedDB"), "open", &[DB.into(), 1.into()])?;
    let e = done(&open, true).await?;
    let db = js::get(&open, "result");
    // A first open asks for the store. It is made, and used, in the
    // upgrade's own transaction, still active here (promise reactions run
    // before the event's dispatch ends); the open succeeds after it.
    let req = if js::get(&e, "type").as_string().as_deref() == Some("upgradeneeded") {
        invoke(&db, "createObjectStore", &[STORE.into()])
    } else {
        let mode = if op == "get" { "readonly" } else { "readwrite" };
        invoke(&db, "transaction", &[STORE.into(), mode.into()]).and_then(|tx| invoke(&tx, "objectStore", &[STORE.into()]))
    }
    .and_then(|st| invoke(&st, op, args));
    let r = match req {
        Ok(req) => done(&req, false).await.map(|_| js::get(&req, "result")),
        Err(e) => Err(e),
    };
    let _ = invoke(&db, "close", &[]);
    r
}

/// A Promise of a key ready to sign: `{ pair, header, jkt }`, where
/// `header` is the proofs' base64url JOSE header (with the public JWK) and
/// `jkt` its thumbprint (RFC 7638).
///
/// A key belongs to a session: kept in IndexedDB under `name` and its
/// thumbprint, so every tab holding the session finds it by the `jkt` in
/// the record, and no other session's key ever replaces it. `want`: the
/// key of that thumbprint (`after`'s if it is that one, else the stored
/// one; rejects if there is none: the session is over elsewhere). `None`:
/// a new pair, stored under its thumbprint, for the next sign-in. `drop`:
/// the thumbprint of a key whose session ended here, deleted first. In
/// memory (`name: None`) the new pair is this manager's alone.
pub fn load(name: Option<String>, want: Option<String>, after: Option<Promise>, drop: Option<String>) -> Promise {
    js::promise(make(name, want, after, drop))
}

/// [`load`]'s work.
async fn make(name: Option<String>, want: Option<String>, after: Option<Promise>, drop: Option<String>) -> Result<JsValue, JsValue> {
    let entry = |jkt: &str| JsValue::from_str(&[name.as_deref().unwrap_or(""), " ", jkt].concat());
    if let (Some(_), Some(d)) = (&name, &drop) {
        let _ = store("delete", &[entry(d)]).await;
    }
    if let Some(w) = &want {
        // The key made just before (its sign-in bound the tokens to it), or
        // the session's key stored by the tab that made it.
        if let Some(k) = after {
            let k = JsFuture::from(k).await.unwrap_or_default();
            if js::get(&k, "jkt").as_string().as_ref() == Some(w) {
                return Ok(k);
            }
        }
        let pair = if name.is_some() { store("get", &[entry(w)]).await? } else { JsValue::UNDEFINED };
        if !pair.is_object() {
            return Err(JsValue::from_str(w));
        }
        return ready(pair).await;
    }
    // Constant arguments as JSON: one call builds each.
    let alg = json(r#"{"name":"ECDSA","namedCurve":"P-256"}"#);
    let pair = call(&subtle(), "generateKey", &[alg, JsValue::FALSE, json(r#"["sign","verify"]"#)]).await?;
    let key = ready(pair.clone()).await?;
    if name.is_some() {
        // A CryptoKeyPair is a dictionary, stored as it is.
        let _ = store("put", &[pair, entry(&js::get(&key, "jkt").as_string().unwrap_or_default())]).await;
    }
    Ok(key)
}

/// `{ pair, header, jkt }` for a key pair.
async fn ready(pair: JsValue) -> Result<JsValue, JsValue> {
    let jwk = call(&subtle(), "exportKey", &["jwk".into(), js::get(&pair, "publicKey")]).await?;
    let (x, y) = (js::get(&jwk, "x").as_string().unwrap_or_default(), js::get(&jwk, "y").as_string().unwrap_or_default());
    let digest =
        call(&subtle(), "digest", &["SHA-256".into(), js_sys::Uint8Array::from(dpop::thumbprint_input(&x, &y).as_bytes()).into()]).await?;
    let jkt = b64(&js_sys::Uint8Array::new(&digest).to_vec());
    Ok(js::object(&[("pair", pair), ("header", b64(dpop::header(&x, &y).as_bytes()).into()), ("jkt", jkt.into())]))
}

/// A new table of the servers' nonces: an object without prototype, so
/// no origin can name an inherited property.
pub fn table() -> JsValue {
    let null = JsValue::NULL;
    js_sys::Object::create(null.unchecked_ref::<js_sys::Object>()).into()
}

/// What signing needs from the session: the key (a Promise of `{ pair,
/// header }`, see [`load`]), the server's nonce, and the clock skew.
pub type Signer = (Promise, Option<String>, f64);

/// Why there is no proof: the manager has no DPoP.
pub fn missing() -> Error {
    Error::Options("dpopProof needs the `dpop` option".into())
}

/// A proof for `htm` `url` signed with the signer's key, issued now on the
/// server's clock (the device clock moved by the skew estimate), with the
/// server's nonce and the access token it goes with, if any (its hash is the
/// proof's `ath`). The claims are taken now; the future only awaits the key,
/// the hash and the signature.
pub fn proof(
    signer: Option<Signer>,
    htm: &str,
    url: &str,
    token: Option<String>,
) -> impl std::future::Future<Output = Result<JsValue, JsValue>> {
    let signer = signer.map(|(key, nonce, skew)| {
        let iat = (js::now() + skew) / 1000.0;
        (key, dpop::claims(&js::random_id(), htm, dpop::htu(url), iat, nonce.as_deref()))
    });
    sign(signer, token)
}

/// Signs `claims` with the key (a Promise of `{ pair, header }`).
#[cfg(feature = "dpop")]
async fn sign(signer: Option<(Promise, String)>, token: Option<String>) -> Result<JsValue, JsValue> {
    let (key, claims) = signer.ok_or_else(|| JsValue::from(missing()))?;
    let key = JsFuture::from(key).await?;
    let mut ath = None;
    if let Some(t) = &token {
        let d = call(&subtle(), "digest", &["SHA-256".into(), js_sys::Uint8Array::from(t.as_bytes()).into()]).await?;
        ath = Some(b64(&js_sys::Uint8Array::new(&d).to_vec()));
    }
    let claims = dpop::finish(claims, ath.as_deref());
    let header = js::get(&key, "header").as_string().unwrap_or_default();
    // `&str` pieces: `[String].concat()` would be a second copy of the join
    // code (measured: 0.1 KB gzipped).
    let input = [header.as_str(), ".", &b64(claims.as_bytes())].concat();
    let alg = json(r#"{"name":"ECDSA","hash":"SHA-256"}"#);
    let private = js::get(&js::get(&key, "pair"), "privateKey");
    let sig = call(&subtle(), "sign", &[alg, private, js_sys::Uint8Array::from(input.as_bytes()).into()]).await?;
    // WebCrypto's ECDSA signature is r || s, as JWS wants it (RFC 7518 s3.4).
    Ok([input.as_str(), ".", &b64(&js_sys::Uint8Array::new(&sig).to_vec())].concat().into())
}

/// Without DPoP there is no proof. (A `cfg`, not the `DPOP` constant: an
/// async body keeps the code after an early return, its states reachable.)
#[cfg(not(feature = "dpop"))]
async fn sign(_: Option<(Promise, String)>, _: Option<String>) -> Result<JsValue, JsValue> {
    Err(missing().into())
}
