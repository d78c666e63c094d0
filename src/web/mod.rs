//! The web layer: the driver that runs the core's session in a browser or
//! mini-program (storage, timers, fetch, tabs, events), and its two front
//! doors: `rust_api` (typed, for Rust frontends) and `js_api` (the npm
//! package's `#[wasm_bindgen]` class, with the `js` feature).

pub mod dpop;
pub mod driver;
pub mod error;
pub mod events;
pub mod http;
pub mod js;
#[cfg(feature = "js")]
pub mod js_api;
pub mod options;
pub mod page;
#[cfg(feature = "rust")]
pub mod rust_api;
pub mod storage;
pub mod tabs;

/// Whether this build has DPoP (the `dpop` feature). Tested as a constant
/// where DPoP's paths begin, so a build without it carries none of its code
/// and still compiles all of it.
pub(crate) const DPOP: bool = cfg!(feature = "dpop");
/// Whether this build has the options for backends that are not OAuth
/// servers (the `backends` feature), likewise.
pub(crate) const BACKENDS: bool = cfg!(feature = "backends");
