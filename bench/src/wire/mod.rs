//! Client-side wire formats, sans-io: the HTTP handshake of WebSocket and SSE clients, the
//! WebSocket frames a client receives and sends, and the benchmark payload.

pub mod handshake;
pub mod payload;
pub mod ws;
