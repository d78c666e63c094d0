//! Tessera: a client-side OAuth 2.0 / JWT token manager for the web,
//! mini-programs and hybrid webviews, compiled to WebAssembly.
//!
//! It holds a user's tokens (localStorage, sessionStorage, memory or the
//! host's own storage), attaches `Authorization: Bearer` (or DPoP) to
//! requests for the origins it trusts, reads `exp` locally, and refreshes
//! before expiry, once, however many requests and tabs race. The same crate
//! is the npm package (`js` feature); this page is the guide for Rust
//! frontends (Leptos, Yew, Dioxus, plain wasm-bindgen) and `wasm-pack test`.
//!
//! # Use
//!
//! ```toml
//! [dependencies]
//! tessera = "0.1"
//! ```
//!
// The Rust API exists on wasm32 only: elsewhere this example is shown, not compiled.
#![cfg_attr(target_arch = "wasm32", doc = "```no_run")]
#![cfg_attr(not(target_arch = "wasm32"), doc = "```text")]
//! use tessera::{Event, Storage, TokenManager, TokenResponse};
//!
//! # async fn app(access_token: String, refresh_token: String) -> Result<(), tessera::Error> {
//! let tm = TokenManager::builder()
//!     .storage(Storage::Local)                  // Session | Memory | Storage::adapter(..)
//!     .storage_key("myapp")                     // default: "tessera:" + client_id
//!     .token_endpoint("https://auth.example.com/oauth/token")
//!     .revocation_endpoint("https://auth.example.com/oauth/revoke")
//!     .client_id("spa")
//!     .allowed_origins(["https://api.example.com"])
//!     .build()?;                                // checked like the JS constructor
//! tm.ready().await;                             // stored tokens are loaded
//!
//! // After your sign-in flow, hand Tessera the token response:
//! tm.set_tokens(&TokenResponse::new(access_token).expires_in(3600).refresh_token(refresh_token))?;
//!
//! tm.access_token();                            // Option<String>
//! tm.expires_at();                              // Option<f64>, ms since the epoch
//! tm.claims();                                  // Option<Claims>: decoded, NOT verified
//! tm.is_expired(std::time::Duration::ZERO);     // bool
//!
//! let me = tm.fetch_with_str("https://api.example.com/me").await?;  // Bearer attached, refreshed first if due
//! let token = tm.access_token_fresh().await?;   // a valid token, refreshing if needed
//! tm.refresh().await?;                          // force a refresh
//!
//! let subscription = tm.on(|e| {
//!     if let Event::Expired | Event::Logout(_) = e { /* show the sign-in page */ }
//! });
//! drop(subscription);                           // removes the listener
//!
//! tm.logout().await;                            // clears memory and storage, tells other tabs, revokes
//! tm.dispose();                                 // stops timers and listeners; stored tokens stay
//! # let _ = (me, token);
//! # Ok(())
//! # }
//! ```
//!
//! [`TokenManager`] is a cheap handle (`Clone`): put one in your framework's
//! context. Its futures are `'static`, so they can be spawned
//! (`wasm_bindgen_futures::spawn_local`) or handed to a Leptos action.
//!
//! # What it does for you
//!
//! Everything the README's "What it does for you" lists, through one driver
//! shared with the JS API: the Bearer only to allowed origins; one refresh
//! before expiry for every caller and every tab (Web Locks, with a storage
//! lease where there are none); after a refusal, one refresh and one replay;
//! rotation; fatal and transient failures sorted, with back-off; a request
//! never sent with another session's token ([`Error::Superseded`]);
//! storage that throws never breaking the app ([`Event::StorageError`]).
//!
//! # Backends that are not OAuth servers
//!
//! [`Builder::refresh`] takes your own refresh call, [`Builder::is_unauthorized`]
//! says what a refusal looks like (`{"code": 403}` in an HTTP 200), and
//! [`Builder::retries`], [`Builder::idempotency_keys`] and
//! [`Builder::device_id_header`] cover the rest; [`Builder::dpop`] turns on
//! sender-constrained tokens (RFC 9449).
//!
//! # Errors
//!
//! One [`Error`] enum; [`Error::code`] is the same string the JS side puts
//! in `error.code` (`"invalid_grant"`, `"no_tokens"`, `"refresh_failed"`,
//! ...), and its `Display` text is the JS `Error`'s message.
//!
//! # Layout
//!
//! - [`core`]: pure Rust, no web-sys: the session state machine and
//!   everything it decides (parsing, expiry, scheduling, back-off, which
//!   stored record wins), tested on the host with an injected clock.
//! - `web` (wasm32 only): the driver that runs the session in a page, and
//!   its two front doors: the Rust API re-exported here, and the
//!   `#[wasm_bindgen]` class of the npm package (`js_api`, with the `js` feature).
//!
//! Signatures are never verified: a browser client cannot hold the key that
//! would make that meaningful. Claims are for display and scheduling only.

// A panic kills the wasm instance and every request after it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::unreachable))]
#![warn(missing_docs)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

// SAFETY: wasm32-unknown-unknown without the atomics feature runs one thread,
// which is what AssumeSingleThreaded requires. The memory benchmark checks
// that freed blocks are reused (no growth over 100,000 operations).
#[cfg(all(target_arch = "wasm32", feature = "js"))]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub use crate::core::error::Error;
pub use crate::core::json::Json;
pub use crate::core::refresh::{BodyFormat, RefreshError};
pub use crate::core::session::{Event, Reason};
pub use crate::core::token::TokenResponse;

#[cfg(all(target_arch = "wasm32", feature = "rust"))]
pub use web::rust_api::{Builder, Claims, RefreshRequest, Storage, StorageAdapter, Subscription, TokenManager};

/// The npm package's JS class (`new TokenManager(options)` in JS), for Rust
/// code that builds the JS API itself, such as this crate's browser tests.
#[cfg(all(target_arch = "wasm32", feature = "js"))]
pub mod js_api {
    pub use crate::web::js_api::TokenManager;
}
