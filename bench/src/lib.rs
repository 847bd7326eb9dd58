//! # herald-bench — Herald's benchmark harness
//!
//! Users of Herald run this to size their fleets: how many idle connections fit in a GiB, how
//! fast the edge accepts them, what end-to-end push latency looks like at a given rate, how
//! many broadcast deliveries a core makes, and how a fleet recovers from a reconnect storm —
//! next to nginx + nchan, a plain tokio-tungstenite server and uWebSockets.js, measured the
//! same way on the same machine.
//!
//! ## Layout
//! - [`cli`]: subcommands and flags; [`scenario`]: `conns`, `fanout`, `push`, `herd`,
//!   `compare`, `history`.
//! - [`systems`]: starting and stopping what is measured (Herald's edge and its Redis,
//!   nginx + nchan and the uWebSockets.js script from `bench/peers/`, the tokio-tungstenite
//!   baseline, the calibration sink).
//! - [`client`] (hidden `client` subcommand) and [`pool`]: connections are held by client
//!   processes the harness spawns (20000 open files per process), each from its own source
//!   addresses; [`wire`] is their sans-io protocol code.
//! - [`tls`]: `--tls` runs — the run's self-signed certificate and the clients' rustls
//!   configuration (clients speak TLS through `client::transport`).
//! - [`publish`]: broadcasts through Herald's delivery port, nchan's publisher, or the
//!   publisher socket of the baseline or of uWebSockets.js.
//! - [`procfs`], [`fit`], [`latency`], [`machine`], [`redis_info`], [`prom`]: what is
//!   measured and how it is reduced; [`report`]: JSON, Markdown and SVG.
//! - [`children`]: every process started is registered and killed by PID on exit or Ctrl-C.

pub mod children;
pub mod cli;
pub mod client;
pub mod clock;
pub mod fit;
pub mod http_client;
pub mod latency;
pub mod machine;
pub mod pool;
pub mod procfs;
pub mod progress;
pub mod prom;
pub mod publish;
pub mod redis_info;
pub mod report;
pub mod scenario;
pub mod systems;
pub mod tls;
pub mod token;
pub mod units;
pub mod wire;
