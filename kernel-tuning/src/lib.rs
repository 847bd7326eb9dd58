//! Kernel and process-limit tuning for Herald hosts.
//!
//! An edge holding hundreds of thousands of connections needs the kernel's file, queue,
//! port, socket-memory and conntrack limits raised, and io_uring allowed; a processor needs
//! ports and TIME_WAIT reuse for its outbound connections. This crate knows each of those
//! settings, checks a host against a target, plans the numbers for a host size, and writes
//! or scripts the change.
//!
//! # Layout
//! - [`tunables`]: one module per setting behind the [`Tunable`] trait (id, current value,
//!   requirement, severity, why). [`tunables::ALL`] lists them.
//! - [`sysroot`]: reading `/proc` (or a fake tree) without ever panicking.
//! - [`target`], [`sizing`]: what a host is tuned for, and every formula.
//! - [`value`], [`requirement`]: values as read or proposed, bounds, severities.
//! - [`check`]: findings and reports (table, JSON); [`startup`]: the edge's start-up check.
//! - [`plan`]: the settings for a target host, as a sysctl.d file.
//! - [`apply`], [`script`]: persist the shortfalls, or render them as a bash script.
//! - [`sysctl_file`], [`diff`], [`size`], [`text`]: file format, diff, sizes, wrapping.
//! - [`cli`]: the `herald-tune` command (`main.rs` only calls [`cli::run`]).

pub mod apply;
pub mod check;
pub mod cli;
pub mod diff;
pub mod plan;
pub mod requirement;
pub mod script;
pub mod size;
pub mod sizing;
pub mod startup;
pub mod sysctl_file;
pub mod sysroot;
pub mod target;
pub mod text;
pub mod tunables;
pub mod value;

pub use check::{check, Finding, Report, Status};
pub use plan::{plan, Plan};
pub use requirement::{Bound, Requirement, Severity};
pub use startup::{startup_findings, startup_findings_for};
pub use sysroot::{ReadError, SysRoot};
pub use target::{Role, Target};
pub use tunables::Tunable;
pub use value::{Limit, Value};
