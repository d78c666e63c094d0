//! Tessera: a client-side OAuth 2.0 / JWT token manager for the web,
//! mini-programs and hybrid webviews, compiled to WebAssembly.
//!
//! - [`core`]: pure Rust, no web-sys; tested on the host with an injected clock.
//! - `web` (wasm32 only): storage backends, timers, fetch, events and the
//!   `#[wasm_bindgen]` API over the core.
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
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

#[cfg(target_arch = "wasm32")]
pub use web::api::TokenManager;
