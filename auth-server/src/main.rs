//! tessera-auth-server: a small, real OAuth 2.0 authorization server for
//! trying and testing Tessera on one machine.
//!
//! - `POST /oauth/token`: `password` and `refresh_token` grants (form or JSON
//!   body). Refresh tokens rotate; reusing an old one revokes the whole
//!   family (RFC 9700 s4.14.2) and answers `invalid_grant`.
//! - `POST /oauth/revoke`: RFC 7009.
//! - `/api/me`: a protected resource; 401 unless the Bearer JWT (HS256) is
//!   valid, unexpired and not revoked. Echoes method and body.
//! - `/api/echo`: unprotected; says which Authorization header arrived.
//! - `/app/*`: a backend that is not an OAuth server (login, refresh, user,
//!   orders), answering HTTP 200 with a `code` as the tutorials' do.
//! - `/test/*`: fault injection and counters for tests and the demo.
//!
//! Binds 127.0.0.1 only: the main port, and port+1 as a second origin for
//! "token must not go there" tests. Any user name signs in with password
//! `password`; the client id is `tessera-demo`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

const CLIENT_ID: &str = "tessera-demo";
const PASSWORD: &str = "password";

/// One sign-in: its rotating refresh token and what happened to it.
struct Family {
    user: String,
    ttl: u64,
    current: String,
    revoked: bool,
    reuse_detected: bool,
    refreshes: u32,
    /// A revocation named the refresh token that was current at the time.
    current_revoked: bool,
    /// The DPoP key (JWK thumbprint) the session is bound to, if any.
    jkt: Option<String>,
    /// Requests to `/api/me` carrying one of its access tokens, answered
    /// or refused (tests count retries with it).
    api_calls: u32,
}

/// A fault to inject into upcoming refreshes.
#[derive(Deserialize, Clone)]
struct Fault {
    /// "503", "429", "500", "invalid_grant", "slow", "non_json", "html200"
    kind: String,
    /// Only this family's refreshes; all families when absent.
    sid: Option<String>,
    /// How many refreshes it applies to (default 1).
    count: Option<u32>,
    /// For "slow": how long to wait before answering normally (default 2000).
    delay_ms: Option<u64>,
    /// For "503": the Retry-After value in seconds (default 1).
    retry_after: Option<u64>,
    /// For "503": a Date header to send instead of the real one (an old
    /// cached error page, a proxy with a wrong clock).
    date: Option<String>,
}

#[derive(Default)]
struct Db {
    families: HashMap<String, Family>,
    by_refresh: HashMap<String, String>,
    revoked_jti: HashSet<String>,
    revoked_sid_access: HashSet<String>,
    faults: VecDeque<Fault>,
    refresh_requests: u64,
    token_requests: u64,
    counter: u64,
    /// The JSON API's orders: (idempotency key, order id).
    orders: Vec<(Option<String>, u64)>,
    /// Make the next order, then answer 503 (the answer lost at a gateway).
    lose_next_order: bool,
    /// DPoP proof ids seen (a replayed proof is refused).
    dpop_jtis: HashSet<String>,
    /// DPoP nonces handed out, with when (server clock, s) and by whom
    /// ("as", the token endpoint, or "rs", the API: each takes only its own).
    dpop_nonces: HashMap<String, (i64, &'static str)>,
    /// Demand a nonce in every DPoP proof.
    dpop_nonce_required: bool,
    /// The API answers every DPoP request `use_dpop_nonce`, nonce or not.
    dpop_nonce_always: bool,
}

struct App {
    secret: [u8; 32],
    issuer: String,
    default_ttl: u64,
    skew_seconds: i64,
    db: Mutex<Db>,
}

type Shared = Arc<App>;

fn now_s(app: &App) -> i64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    real + app.skew_seconds
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    // getrandom only fails on exotic platforms; fall back to time-based bytes.
    if getrandom::getrandom(&mut b).is_err() {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    B64.encode(b)
}

fn sign(app: &App, claims: &Value) -> String {
    let head = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    let input = format!("{head}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(&app.secret).expect("any key length works for HMAC");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn verify(app: &App, token: &str) -> Option<Value> {
    let (input, sig) = token.rsplit_once('.')?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&app.secret).ok()?;
    mac.update(input.as_bytes());
    mac.verify_slice(&B64.decode(sig).ok()?).ok()?;
    let (_, body) = input.split_once('.')?;
    serde_json::from_slice(&B64.decode(body).ok()?).ok()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({"error": code, "error_description": description}))).into_response()
}

/// Form or JSON body into name/value pairs.
fn params(headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let json_body = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("json"));
    if json_body {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        return v
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))).collect())
            .unwrap_or_default();
    }
    form_urlencoded(body)
}

fn form_urlencoded(body: &[u8]) -> HashMap<String, String> {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn issue(app: &App, db: &mut Db, sid: &str) -> Response {
    let Some(fam) = db.families.get(sid) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown session");
    };
    db.counter += 1;
    let now = now_s(app);
    let jti = format!("at-{}", db.counter);
    let mut claims = json!({
        "iss": app.issuer, "sub": fam.user, "aud": "tessera-demo-api", "iat": now, "exp": now + fam.ttl as i64,
        "jti": jti, "sid": sid, "scope": "openid profile api", "name": fam.user,
    });
    if let Some(jkt) = &fam.jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let access = sign(app, &claims);
    let body = json!({
        "access_token": access, "token_type": if fam.jkt.is_some() { "DPoP" } else { "Bearer" }, "expires_in": fam.ttl,
        "refresh_token": fam.current, "scope": "openid profile api",
    });
    let mut r = ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(body)).into_response();
    if db.dpop_nonce_required {
        if let Ok(v) = HeaderValue::from_str(&dpop_nonce(app, db, "as")) {
            r.headers_mut().insert("dpop-nonce", v);
        }
    }
    r
}

// ---- DPoP (RFC 9449) ----------------------------------------------------------

/// Why a DPoP proof was not accepted.
enum DpopError {
    /// A nonce is required (and was missing or stale).
    UseNonce,
    /// The proof is invalid; why.
    Invalid(&'static str),
}

/// The JWK thumbprint (RFC 7638) of a P-256 key.
fn thumbprint(x: &str, y: &str) -> String {
    use sha2::Digest;
    B64.encode(Sha256::digest(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)))
}

/// Checks the `DPoP` header of a request to `path` (RFC 9449 s4.3): the
/// signature with the key it embeds, `typ`, `alg`, `htm`, `htu`, the time
/// (or the server's nonce), a `jti` not seen before, `ath` for `access_token`.
/// `Ok(None)` without a proof; `Ok(Some(jkt))` for a valid one.
fn dpop_check(
    app: &App,
    db: &mut Db,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<Option<String>, DpopError> {
    let scope = if access_token.is_some() { "rs" } else { "as" };
    use p256::ecdsa::signature::Verifier;
    let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let bad = DpopError::Invalid;
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not a JWS"));
    };
    let header: Value = B64.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(bad("header"))?;
    let claims: Value = B64.decode(c).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(bad("claims"))?;
    if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" {
        return Err(bad("typ or alg"));
    }
    let jwk = &header["jwk"];
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || !jwk["d"].is_null() {
        return Err(bad("jwk"));
    }
    let (x, y) = (jwk["x"].as_str().unwrap_or(""), jwk["y"].as_str().unwrap_or(""));
    let (xb, yb) = (B64.decode(x).map_err(|_| bad("x"))?, B64.decode(y).map_err(|_| bad("y"))?);
    if xb.len() != 32 || yb.len() != 32 {
        return Err(bad("jwk size"));
    }
    let point = p256::EncodedPoint::from_affine_coordinates(xb.as_slice().into(), yb.as_slice().into(), false);
    let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| bad("key"))?;
    let signature = p256::ecdsa::Signature::from_slice(&B64.decode(sig).map_err(|_| bad("signature"))?).map_err(|_| bad("signature"))?;
    key.verify(format!("{h}.{c}").as_bytes(), &signature).map_err(|_| bad("signature does not verify"))?;
    if claims["htm"].as_str() != Some(method) {
        return Err(bad("htm"));
    }
    if claims["htu"].as_str() != Some(format!("{}{path}", app.issuer).as_str()) {
        return Err(bad("htu"));
    }
    let now = now_s(app);
    let nonce = claims["nonce"].as_str().and_then(|n| db.dpop_nonces.get(n)).filter(|(at, by)| now - *at <= 300 && *by == scope);
    if db.dpop_nonce_required && nonce.is_none() {
        return Err(DpopError::UseNonce);
    }
    // RFC 9449 s4.3 step 11: the creation time is the iat, or a
    // server-managed timestamp in the nonce.
    if nonce.is_none() && claims["iat"].as_f64().is_none_or(|iat| (iat - now as f64).abs() > 60.0) {
        return Err(bad("iat is not within 60 s of the server's clock"));
    }
    let jti = claims["jti"].as_str().filter(|j| !j.is_empty()).ok_or(bad("jti"))?;
    if !db.dpop_jtis.insert(jti.to_string()) {
        return Err(bad("jti seen before (a replayed proof)"));
    }
    if let Some(at) = access_token {
        use sha2::Digest;
        if claims["ath"].as_str() != Some(B64.encode(Sha256::digest(at.as_bytes())).as_str()) {
            return Err(bad("ath"));
        }
    }
    Ok(Some(thumbprint(x, y)))
}

/// A fresh nonce of the token endpoint ("as") or the API ("rs").
fn dpop_nonce(app: &App, db: &mut Db, scope: &'static str) -> String {
    let n = random_token();
    db.dpop_nonces.insert(n.clone(), (now_s(app), scope));
    n
}

/// A token endpoint error for a DPoP problem, with a nonce to use.
fn dpop_refused(app: &App, db: &mut Db, e: DpopError) -> Response {
    let mut r = match e {
        DpopError::UseNonce => oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof"),
        DpopError::Invalid(why) => oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", why),
    };
    if let Ok(v) = HeaderValue::from_str(&dpop_nonce(app, db, "as")) {
        r.headers_mut().insert("dpop-nonce", v);
    }
    r
}

async fn token(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(&headers, &body);
    if p.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id must be tessera-demo");
    }
    let jkt = {
        let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
        match dpop_check(&app, &mut db, &headers, "POST", "/oauth/token", None) {
            Ok(j) => j,
            Err(e) => return dpop_refused(&app, &mut db, e),
        }
    };
    match p.get("grant_type").map(String::as_str) {
        Some("password") => {
            let user = p.get("username").cloned().unwrap_or_default();
            if user.is_empty() || p.get("password").map(String::as_str) != Some(PASSWORD) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "wrong user name or password (any name, password \"password\")",
                );
            }
            // 0 is allowed: a server that issues tokens already expired.
            let ttl = p.get("ttl").and_then(|t| t.parse::<u64>().ok()).unwrap_or(app.default_ttl).clamp(0, 86_400);
            let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
            db.token_requests += 1;
            let sid = format!("s-{}", random_token().get(..12).unwrap_or("x"));
            let rt = random_token();
            db.by_refresh.insert(rt.clone(), sid.clone());
            db.families.insert(
                sid.clone(),
                Family {
                    user,
                    ttl,
                    current: rt,
                    revoked: false,
                    reuse_detected: false,
                    refreshes: 0,
                    current_revoked: false,
                    jkt,
                    api_calls: 0,
                },
            );
            issue(&app, &mut db, &sid)
        }
        Some("refresh_token") => refresh(app, p, jkt).await,
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use password or refresh_token"),
    }
}

async fn refresh(app: Shared, p: HashMap<String, String>, jkt: Option<String>) -> Response {
    let rt = p.get("refresh_token").cloned().unwrap_or_default();
    let fault = {
        let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
        db.refresh_requests += 1;
        let Some(sid) = db.by_refresh.get(&rt).cloned() else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown refresh token");
        };
        let pos = db.faults.iter().position(|f| f.sid.as_deref().is_none_or(|s| s == sid));
        let fault = pos.and_then(|i| {
            let f = db.faults.get_mut(i)?;
            let left = f.count.unwrap_or(1).saturating_sub(1);
            f.count = Some(left);
            let out = f.clone();
            if left == 0 {
                db.faults.remove(i);
            }
            Some(out)
        });
        fault
    };
    if let Some(f) = &fault {
        match f.kind.as_str() {
            "503" => {
                let mut r = (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
                let ra = f.retry_after.unwrap_or(1).to_string();
                if let Ok(v) = HeaderValue::from_str(&ra) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                if let Some(v) = f.date.as_deref().and_then(|d| HeaderValue::from_str(d).ok()) {
                    r.headers_mut().insert(header::DATE, v);
                }
                return r;
            }
            "500" => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            "429" => {
                return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], Json(json!({"error": "slow_down"}))).into_response()
            }
            "non_json" | "html200" => {
                return (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html>captive portal</html>").into_response()
            }
            "slow" => tokio::time::sleep(Duration::from_millis(f.delay_ms.unwrap_or(2000))).await,
            _ => {}
        }
    }
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sid) = db.by_refresh.get(&rt).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown refresh token");
    };
    let Some(fam) = db.families.get_mut(&sid) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown session");
    };
    if fault.as_ref().is_some_and(|f| f.kind == "invalid_grant") {
        fam.revoked = true;
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "injected fault: refresh token revoked");
    }
    if fam.revoked {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "session revoked");
    }
    if fam.jkt.is_some() && fam.jkt != jkt {
        // RFC 9449 s5: a refresh token bound to a key needs a proof with it.
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", "the refresh token is bound to another DPoP key");
    }
    if fam.current != rt {
        // An old refresh token came back: a thief or a race. Revoke the family.
        fam.revoked = true;
        fam.reuse_detected = true;
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token reuse detected; session revoked");
    }
    let next = random_token();
    fam.current = next.clone();
    fam.refreshes += 1;
    db.by_refresh.insert(next, sid.clone());
    issue(&app, &mut db, &sid)
}

async fn revoke(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(&headers, &body);
    let t = p.get("token").cloned().unwrap_or_default();
    let claims = verify(&app, &t);
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sid) = db.by_refresh.get(&t).cloned() {
        if let Some(f) = db.families.get_mut(&sid) {
            f.revoked = true;
            f.current_revoked |= f.current == t;
        }
        db.revoked_sid_access.insert(sid);
    } else if let Some(jti) = claims.as_ref().and_then(|c| c["jti"].as_str()) {
        db.revoked_jti.insert(jti.to_string());
    }
    // RFC 7009 s2.2: 200 whether or not the token was known.
    StatusCode::OK.into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// The token of `Authorization: DPoP <token>`.
fn dpop_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("DPoP ")
}

/// A 401 for a DPoP-bound token (RFC 9449 s7.1), with a nonce to use.
fn dpop_unauthorized(app: &App, db: &mut Db, error: &str, why: &str) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"error": error, "error_description": why}))).into_response();
    let challenge = format!("DPoP algs=\"ES256\", error=\"{error}\", error_description=\"{why}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&dpop_nonce(app, db, "rs")) {
        r.headers_mut().insert("dpop-nonce", v);
    }
    r
}

fn unauthorized(why: &str) -> Response {
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token", "error_description": why}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn api_me(State(app): State<Shared>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(c) = dpop_token(&headers).or_else(|| bearer(&headers)).and_then(|t| verify(&app, t)) {
        let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = c["sid"].as_str().and_then(|sid| db.families.get_mut(sid)) {
            f.api_calls += 1;
        }
    }
    // A DPoP-bound token must come as DPoP with a proof of its key.
    if let Some(t) = dpop_token(&headers).or_else(|| bearer(&headers)) {
        if let Some(jkt) = verify(&app, t).and_then(|c| c["cnf"]["jkt"].as_str().map(String::from)) {
            let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
            if dpop_token(&headers).is_none() {
                return dpop_unauthorized(&app, &mut db, "invalid_token", "a DPoP-bound token sent as Bearer");
            }
            if db.dpop_nonce_always {
                return dpop_unauthorized(&app, &mut db, "use_dpop_nonce", "Resource server requires nonce in DPoP proof");
            }
            match dpop_check(&app, &mut db, &headers, method.as_str(), "/api/me", Some(t)) {
                Ok(Some(j)) if j == jkt => {}
                Ok(Some(_)) => return dpop_unauthorized(&app, &mut db, "invalid_dpop_proof", "a proof of another key"),
                Ok(None) => return dpop_unauthorized(&app, &mut db, "invalid_dpop_proof", "no DPoP proof"),
                Err(DpopError::UseNonce) => {
                    return dpop_unauthorized(&app, &mut db, "use_dpop_nonce", "Resource server requires nonce in DPoP proof")
                }
                Err(DpopError::Invalid(why)) => return dpop_unauthorized(&app, &mut db, "invalid_dpop_proof", why),
            }
        }
    }
    let Some(t) = bearer(&headers).or_else(|| dpop_token(&headers)) else { return unauthorized("no bearer token") };
    let Some(c) = verify(&app, t) else { return unauthorized("bad signature") };
    if c["exp"].as_i64().unwrap_or(0) <= now_s(&app) {
        return unauthorized("token expired");
    }
    {
        let db = app.db.lock().unwrap_or_else(|e| e.into_inner());
        let sid = c["sid"].as_str().unwrap_or("");
        if db.revoked_jti.contains(c["jti"].as_str().unwrap_or(""))
            || db.revoked_sid_access.contains(sid)
            || db.families.get(sid).is_none_or(|f| f.revoked)
        {
            return unauthorized("token revoked");
        }
    }
    Json(json!({
        "sub": c["sub"], "sid": c["sid"], "jti": c["jti"], "exp": c["exp"],
        "method": method.as_str(), "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

async fn api_echo(method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
    Json(json!({
        "authorization": h("authorization"), "device": h("x-device-id"), "idempotency_key": h("idempotency-key"),
        "method": method.as_str(), "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

// ---- A backend that is not an OAuth server -----------------------------------
//
// Shaped like the Flask/Express tutorials': JSON bodies, HTTP 200 with a
// `code` for every answer (errors included), a `token` and a rotating
// `refresh_token`, orders that a one-time key keeps from being made twice.

fn app_answer(code: u16, msg: &str, data: Option<Value>) -> Response {
    let mut body = json!({"code": code, "msg": msg});
    if let Some(d) = data {
        body["data"] = d;
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn app_tokens(app: &App, db: &mut Db, sid: &str) -> Option<Value> {
    let fam = db.families.get(sid)?;
    db.counter += 1;
    let now = now_s(app);
    let claims = json!({"sub": fam.user, "iat": now, "exp": now + fam.ttl as i64, "jti": format!("app-{}", db.counter), "sid": sid});
    Some(json!({"token": sign(app, &claims), "refresh_token": fam.current}))
}

/// `POST /app/login {username, password, ttl?}`.
async fn app_login(State(app): State<Shared>, body: Bytes) -> Response {
    let p: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let user = p["username"].as_str().unwrap_or("").to_string();
    if user.is_empty() || p["password"].as_str() != Some(PASSWORD) {
        return app_answer(401, "账号或密码错误", None);
    }
    let ttl = p["ttl"].as_u64().unwrap_or(app.default_ttl).clamp(1, 86_400);
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    let sid = format!("a-{}", random_token().get(..12).unwrap_or("x"));
    let rt = random_token();
    db.by_refresh.insert(rt.clone(), sid.clone());
    let fam = Family {
        user,
        ttl,
        current: rt,
        revoked: false,
        reuse_detected: false,
        refreshes: 0,
        current_revoked: false,
        jkt: None,
        api_calls: 0,
    };
    db.families.insert(sid.clone(), fam);
    let data = app_tokens(&app, &mut db, &sid);
    app_answer(200, "登录成功", data)
}

/// `POST /app/refresh {refresh_token}`: rotating; a reused or unknown
/// refresh token answers `{"code": 401}` (with HTTP 200) and ends the family.
async fn app_refresh(State(app): State<Shared>, body: Bytes) -> Response {
    let p: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rt = p["refresh_token"].as_str().unwrap_or("").to_string();
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    db.refresh_requests += 1;
    let Some(sid) = db.by_refresh.get(&rt).cloned() else { return app_answer(401, "refresh token unknown", None) };
    let Some(fam) = db.families.get_mut(&sid) else { return app_answer(401, "session unknown", None) };
    if fam.revoked {
        return app_answer(401, "session revoked", None);
    }
    if fam.current != rt {
        fam.revoked = true;
        fam.reuse_detected = true;
        return app_answer(401, "refresh token reused; session revoked", None);
    }
    let next = random_token();
    fam.current = next.clone();
    fam.refreshes += 1;
    db.by_refresh.insert(next, sid.clone());
    let data = app_tokens(&app, &mut db, &sid);
    app_answer(200, "ok", data)
}

/// The claims of a valid app token, or the message of the `{"code": 403}`
/// answer for it.
fn app_auth(app: &App, headers: &HeaderMap) -> Result<Value, &'static str> {
    let Some(t) = bearer(headers) else { return Err("请携带有效的Token") };
    let Some(c) = verify(app, t) else { return Err("Token无效或已被篡改") };
    if c["exp"].as_i64().unwrap_or(0) <= now_s(app) {
        return Err("Token已过期,请重新登录");
    }
    let db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    let sid = c["sid"].as_str().unwrap_or("");
    if db.revoked_jti.contains(c["jti"].as_str().unwrap_or(""))
        || db.revoked_sid_access.contains(sid)
        || db.families.get(sid).is_none_or(|f| f.revoked)
    {
        return Err("Token无效或已被篡改");
    }
    Ok(c)
}

/// `GET /app/user`: who the token belongs to.
async fn app_user(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match app_auth(&app, &headers) {
        Ok(c) => {
            let device = headers.get("x-device-id").and_then(|v| v.to_str().ok());
            app_answer(200, "ok", Some(json!({"sub": c["sub"], "sid": c["sid"], "jti": c["jti"], "device": device})))
        }
        Err(msg) => app_answer(403, msg, None),
    }
}

/// `POST /app/orders`: one order per `Idempotency-Key`; a repeat with the
/// same key gets the order already made.
async fn app_orders(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(msg) = app_auth(&app, &headers) {
        return app_answer(403, msg, None);
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(String::from);
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = key.as_ref().and_then(|k| db.orders.iter().find(|(o, _)| o.as_ref() == Some(k))).map(|(_, id)| *id) {
        return app_answer(200, "ok", Some(json!({"id": id, "created": false})));
    }
    db.counter += 1;
    let id = db.counter;
    db.orders.push((key, id));
    if std::mem::take(&mut db.lose_next_order) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the gateway lost the answer").into_response();
    }
    app_answer(200, "ok", Some(json!({"id": id, "created": true})))
}

#[derive(Deserialize)]
struct DpopMode {
    nonce: bool,
    /// The API asks for a nonce on every request, whatever the proof.
    #[serde(default)]
    always: bool,
}

/// `POST /test/dpop {"nonce": true}`: demand a server nonce in every proof.
async fn dpop_mode(State(app): State<Shared>, Json(m): Json<DpopMode>) -> Response {
    let mut db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    db.dpop_nonce_required = m.nonce;
    db.dpop_nonce_always = m.always;
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /test/orders/lose-next`: the next order is made, its answer lost.
async fn lose_next_order(State(app): State<Shared>) -> Response {
    app.db.lock().unwrap_or_else(|e| e.into_inner()).lose_next_order = true;
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /test/orders`: how many orders there are, per key.
async fn orders_made(State(app): State<Shared>) -> Response {
    let db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = db.orders.iter().map(|(k, id)| json!({"key": k, "id": id})).collect();
    Json(json!({"count": db.orders.len(), "orders": list})).into_response()
}

async fn add_fault(State(app): State<Shared>, Json(f): Json<Fault>) -> Response {
    app.db.lock().unwrap_or_else(|e| e.into_inner()).faults.push_back(f);
    StatusCode::NO_CONTENT.into_response()
}

async fn family(State(app): State<Shared>, Path(sid): Path<String>) -> Response {
    let db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    match db.families.get(&sid) {
        Some(f) => Json(json!({
            "refreshes": f.refreshes, "revoked": f.revoked, "reuse_detected": f.reuse_detected, "current_revoked": f.current_revoked,
            "jkt": f.jkt, "api_calls": f.api_calls,
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct Sid {
    sid: String,
}

async fn revoke_access(State(app): State<Shared>, Json(s): Json<Sid>) -> Response {
    app.db.lock().unwrap_or_else(|e| e.into_inner()).revoked_sid_access.insert(s.sid);
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(app): State<Shared>) -> Response {
    let db = app.db.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({"refresh_requests": db.refresh_requests, "token_requests": db.token_requests, "families": db.families.len()}))
        .into_response()
}

#[derive(Deserialize)]
struct To {
    to: String,
    /// 302 by default; 307 keeps the method and body (a POST stays a POST).
    code: Option<u16>,
}

/// Redirects anywhere: tests check that a token does not follow a request
/// to another origin, and that a refresh token is never POSTed onward.
async fn redirect(axum::extract::Query(q): axum::extract::Query<To>) -> Response {
    let code = if q.code == Some(307) { StatusCode::TEMPORARY_REDIRECT } else { StatusCode::FOUND };
    match HeaderValue::from_str(&q.to) {
        Ok(v) => (code, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// `--mount /prefix=DIR`, repeatable: static folders under a path.
fn mounts() -> Vec<(String, String)> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|w| w[0] == "--mount")
        .filter_map(|w| w[1].split_once('=').map(|(p, d)| (p.to_string(), d.to_string())))
        .collect()
}

fn router(app: Shared, files: bool) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::DATE, header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::HeaderName::from_static("dpop-nonce")])
        .max_age(Duration::from_secs(600));
    let r = Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/api/me", any(api_me))
        .route("/api/echo", any(api_echo))
        .route("/test/fault", post(add_fault))
        .route("/test/family/{sid}", get(family))
        .route("/test/revoke-access", post(revoke_access))
        .route("/test/stats", get(stats))
        .route("/test/redirect", any(redirect))
        .route("/app/login", post(app_login))
        .route("/app/refresh", post(app_refresh))
        .route("/app/user", get(app_user))
        .route("/app/orders", post(app_orders))
        .route("/test/orders/lose-next", post(lose_next_order))
        .route("/test/orders", get(orders_made))
        .route("/test/dpop", post(dpop_mode))
        .route("/healthz", get(|| async { "ok" }));
    let mut r = r;
    if files {
        for (prefix, dir) in mounts() {
            r = r.nest_service(&prefix, tower_http::services::ServeDir::new(dir));
        }
        if let Some(dir) = arg("--static") {
            r = r.fallback_service(tower_http::services::ServeDir::new(dir));
        }
    }
    let r = r.layer(cors);
    // --isolate: cross-origin isolation, which gives pages 5 µs timers
    // (the benchmarks) instead of 100 µs ones.
    let r = if std::env::args().any(|a| a == "--isolate") {
        use tower_http::set_header::SetResponseHeaderLayer;
        r.layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-embedder-policy"),
            HeaderValue::from_static("require-corp"),
        ))
    } else {
        r
    };
    r.with_state(app)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(8787);
    let mut secret = [0u8; 32];
    if getrandom::getrandom(&mut secret).is_err() {
        secret = *b"tessera-auth-server-fallback-key";
    }
    let app = Arc::new(App {
        secret,
        issuer: format!("http://127.0.0.1:{port}"),
        default_ttl: arg("--access-ttl").and_then(|t| t.parse().ok()).unwrap_or(30),
        skew_seconds: arg("--clock-offset").and_then(|t| t.parse().ok()).unwrap_or(0),
        db: Mutex::new(Db::default()),
    });
    let main_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let other_addr = SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1)));
    let main = tokio::net::TcpListener::bind(main_addr).await?;
    let other = tokio::net::TcpListener::bind(other_addr).await?;
    println!("tessera-auth-server listening on http://{main_addr} (second origin: http://{other_addr})");
    let a = axum::serve(main, router(app.clone(), true));
    let b = axum::serve(other, router(app, false));
    // The second origin serves no files: it stands for "somewhere else".
    tokio::select! {
        r = a => r,
        r = b => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
