//! The web layer: storage backends, timers, fetch, events and the
//! `#[wasm_bindgen]` API, over the pure core.

pub mod api;
pub mod dpop;
pub mod driver;
pub mod error;
pub mod events;
pub mod http;
pub mod js;
pub mod options;
pub mod storage;
pub mod tabs;
