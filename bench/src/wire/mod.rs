//! Client-side wire formats, sans-io: the HTTP handshake of WebSocket and SSE clients and the
//! benchmark payload. WebSocket frames are `herald_protocol::ws::client`.

pub mod handshake;
pub mod payload;
