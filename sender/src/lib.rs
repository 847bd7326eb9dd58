//! # herald-sender — publishing pushes from Rust
//!
//! Backends (and `herald send`) publish through [`Sender`], which writes records in the Kafka
//! sender contract (`herald_protocol::kafka`, documented in `docs/protocol.md`); Herald's
//! processors consume them and forward each push to the edge that holds its target:
//!
//! - topic by priority (`herald.push.high|normal|low`, names configurable in [`Topics`]);
//! - key = the target user, so one user's pushes stay ordered on one partition. A broadcast has
//!   no key (the contract's `PushHeaders::key`): librdkafka then spreads broadcasts over the
//!   partitions, so two broadcasts are not ordered relative to each other;
//! - value = the payload, delivered to clients verbatim;
//! - headers `herald-id` (a random [`MessageId`] when the caller gives none), `herald-target`,
//!   `herald-expires-at` (now + ttl, unix ms; omitted without a ttl: the push never expires)
//!   and `herald-created-at` (now, unix µs).
//!
//! The crate depends on the contract (`herald-protocol`) and the Kafka client only, so a
//! backend does not pull in the processor.
//!
//! ```no_run
//! use std::time::Duration;
//! use herald_protocol::kafka::{Priority, Target};
//! use herald_sender::{Sender, SenderConfig};
//!
//! # async fn publish() -> Result<(), herald_sender::SendError> {
//! let sender = Sender::new(&SenderConfig::new("kafka-1:9092,kafka-2:9092"))?;
//! let id = sender
//!     .send(
//!         &Target::User("alice".into()),
//!         br#"{"text":"hello"}"#,
//!         Priority::High,
//!         Some(Duration::from_secs(60)),
//!     )
//!     .await?;
//! println!("published {id}");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`sender`]: [`Sender`], its configuration and errors, and the per-priority producers.
//! - [`topics`]: [`Topics`], the topic names shared with the processors.
//! - [`id`]: [`MessageId`], the `herald-id` of a push.

pub mod id;
pub mod sender;
pub mod topics;

pub use id::MessageId;
pub use sender::{linger_for, Push, SendError, Sender, SenderConfig};
pub use topics::Topics;
