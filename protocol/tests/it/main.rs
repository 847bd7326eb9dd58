//! The protocol crate's integration tests, one binary: each module exercises one format
//! through the public API only.

mod delivery;
mod kafka;
mod sse;
