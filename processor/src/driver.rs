//! # Driver — carries out one record's [`PushFlow`] and settles it
//!
//! The lane creates a driver when the record's routes are known; [`Driver::start`] submits the
//! first sends synchronously (so records of one partition reach the links in partition order),
//! then [`Driver::run`] awaits replies, backoffs and the re-look-up as tasks of its own
//! `JoinSet`, feeds them to the flow, and performs the actions it returns. When the flow is
//! finished the record is dead-lettered if needed and then settled.
//!
//! Routes arrive resolved (address included) from the look-up; the driver keeps their
//! addresses for the sends and tells the flow only whether each route is live. A transport
//! failure reaches the flow as its own [`SendFailure`], not as the link's error type.
//!
//! Dropping a driver (processor stopped) aborts its tasks; the record stays unsettled and is
//! delivered again by the partition's next owner.

use std::collections::HashMap;
use std::sync::Arc;

use herald_protocol::delivery::{BroadcastMsg, DeliverMsg, NEVER_EXPIRES};
use herald_protocol::history::Position;
use herald_protocol::kafka::{Priority, PushHeaders, Target};
use rdkafka::message::{Message, OwnedMessage};
use tokio::task::JoinSet;

use crate::clock::now_unix_us;
use crate::directory::Resolved;
use crate::flow::{Action, PushFlow, Reply, Route, RouteStatus, SendFailure, Tally};
use crate::link::{await_reply, Item};
use crate::metrics as m;
use crate::pool::affinity;
use crate::processor::Shared;

/// Something a driver task finished waiting for.
#[derive(Debug)]
enum Event {
    /// The reply to a send.
    Reply {
        /// Where it was sent.
        route: Route,
        /// Which attempt.
        attempt: u32,
        /// What came back.
        reply: Reply,
    },
    /// A retry backoff elapsed.
    Due {
        /// Route to retry.
        route: Route,
        /// Attempt to make.
        attempt: u32,
    },
    /// The re-look-up finished (`None`: the registry failed).
    Relooked(Option<Vec<Resolved>>),
}

/// Where a record came from, to settle it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// Priority of the record's topic.
    pub priority: Priority,
    /// Partition.
    pub partition: i32,
    /// Assignment generation the record was admitted in.
    pub generation: u64,
    /// Offset.
    pub offset: i64,
}

/// One record being forwarded.
pub(crate) struct Driver {
    /// Processor-wide state.
    shared: Arc<Shared>,
    /// Where the record came from.
    origin: Origin,
    /// The record (kept for the dead-letter copy and the payload).
    msg: OwnedMessage,
    /// Its parsed headers.
    headers: PushHeaders,
    /// The id sent to edges (`herald-id`, or `topic:partition:offset` when the record had none).
    message_id: String,
    /// Where the push sits in its user's history (history on, user-targeted pushes).
    position: Option<Position>,
    /// Forwarding state.
    flow: PushFlow,
    /// Delivery-port address of every live route the look-ups returned.
    addrs: HashMap<Route, Arc<str>>,
    /// Pending replies, backoffs and look-ups.
    tasks: JoinSet<Event>,
    /// When the processor took the record from librdkafka (unix µs), for the first sends'
    /// `queue` stage; `None` after them (retries and re-looked-up routes are not sampled).
    polled_us: Option<u64>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("origin", &self.origin)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// The id a push carries to the edges: its `herald-id`, or `topic:partition:offset` when the
/// record had none.
pub(crate) fn message_id(headers: &PushHeaders, msg: &OwnedMessage) -> String {
    headers
        .id
        .clone()
        .unwrap_or_else(|| format!("{}:{}:{}", msg.topic(), msg.partition(), msg.offset()))
}

pub(crate) fn now_ms() -> u64 {
    now_unix_us() / 1000
}

impl Driver {
    /// Creates the flow for `routes` and submits the first sends now (`polled_us`: when the
    /// processor took the record, for the `queue` stage of the latency breakdown).
    pub(crate) fn start(
        shared: Arc<Shared>,
        origin: Origin,
        msg: OwnedMessage,
        headers: PushHeaders,
        routes: Vec<Resolved>,
        position: Option<Position>,
        polled_us: u64,
    ) -> Driver {
        let message_id = message_id(&headers, &msg);
        let flow = PushFlow::new(
            shared.flow,
            matches!(headers.target, Target::Broadcast),
            headers.expires_at_ms.unwrap_or(NEVER_EXPIRES),
            fastrand::u64(..),
        );
        let mut driver = Driver {
            shared,
            origin,
            msg,
            headers,
            message_id,
            position,
            flow,
            addrs: HashMap::new(),
            tasks: JoinSet::new(),
            polled_us: Some(polled_us),
        };
        let routes = driver.remember(routes);
        let actions = driver.flow.start(routes, now_ms());
        driver.apply(actions);
        driver.polled_us = None;
        driver
    }

    /// Keeps the addresses of `resolved` for the sends; returns what the flow needs.
    fn remember(&mut self, resolved: Vec<Resolved>) -> Vec<(Route, RouteStatus)> {
        resolved
            .into_iter()
            .map(|r| {
                let status = r.status();
                if let Some(addr) = r.addr {
                    self.addrs.insert(r.route.clone(), addr);
                }
                (r.route, status)
            })
            .collect()
    }

    fn item(&self) -> Item {
        let payload = self.msg.payload().unwrap_or_default().to_vec();
        let expires_at_ms = self.headers.expires_at_ms.unwrap_or(NEVER_EXPIRES);
        match &self.headers.target {
            Target::Broadcast => Item::Broadcast(BroadcastMsg {
                seq: 0,
                message_id: self.message_id.clone(),
                expires_at_ms,
                payload,
            }),
            target => Item::Deliver(DeliverMsg {
                seq: 0,
                user: target.user().unwrap_or_default().to_string(),
                device: target.device().map(str::to_string),
                message_id: self.message_id.clone(),
                expires_at_ms,
                payload,
                position: self.position,
            }),
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            log::debug!("{}: {action:?}", self.message_id);
            match action {
                Action::Send { route, attempt } => {
                    let Some(addr) = self.addrs.get(&route) else {
                        // The flow sends only routes it was told are live, which have one.
                        log::error!("{}: no address for {route}", self.message_id);
                        continue;
                    };
                    let key = self.headers.target.user().unwrap_or(&self.message_id);
                    let rx = self.shared.pool.submit(
                        &route,
                        addr,
                        self.origin.priority,
                        affinity(key),
                        self.item(),
                        self.polled_us.filter(|_| attempt == 1),
                    );
                    let timeout = self.shared.request_timeout;
                    self.tasks.spawn(async move {
                        let reply = await_reply(rx, timeout).await.map_err(|e| SendFailure {
                            failure: e.failure(),
                            detail: e.to_string(),
                        });
                        Event::Reply {
                            route,
                            attempt,
                            reply,
                        }
                    });
                }
                Action::Retry {
                    route,
                    attempt,
                    after,
                } => {
                    self.tasks.spawn(async move {
                        tokio::time::sleep(after).await;
                        Event::Due { route, attempt }
                    });
                }
                Action::Relookup { after } => {
                    let shared = self.shared.clone();
                    let user = self.headers.target.user().unwrap_or_default().to_string();
                    let device = self.headers.target.device().map(str::to_string);
                    self.tasks.spawn(async move {
                        tokio::time::sleep(after).await;
                        shared.directory.invalidate(&user);
                        let routes = shared
                            .directory
                            .user_routes(&user, device.as_deref())
                            .await
                            .map_err(|e| {
                                metrics::counter!(m::LOOKUP_ERRORS).increment(1);
                                log::warn!("re-look-up of {user} failed: {e}");
                            })
                            .ok();
                        Event::Relooked(routes)
                    });
                }
            }
        }
        self.record_tallies();
    }

    fn record_tallies(&mut self) {
        for tally in self.flow.take_tallies() {
            match tally {
                Tally::Outcome(outcome) => {
                    metrics::counter!(m::OUTCOMES, "outcome" => outcome.as_str()).increment(1);
                }
                Tally::Delivered { connections } => {
                    metrics::counter!(m::DELIVERED_CONNECTIONS).increment(u64::from(connections));
                    if let Some(created) = self.headers.created_at_us {
                        let secs = now_unix_us().saturating_sub(created) as f64 / 1e6;
                        metrics::histogram!(m::E2E_LATENCY).record(secs);
                    }
                }
                Tally::Retry(failure) => {
                    metrics::counter!(m::RETRIES, "error" => failure.as_str()).increment(1);
                }
            }
        }
    }

    /// Drives the flow to its end, dead-letters if needed, settles.
    pub(crate) async fn run(mut self) {
        while !self.flow.is_finished() {
            let Some(joined) = self.tasks.join_next().await else {
                break;
            };
            let Ok(event) = joined else {
                continue;
            };
            let now = now_ms();
            log::debug!("{}: {event:?}", self.message_id);
            let actions = match event {
                Event::Reply {
                    route,
                    attempt,
                    reply,
                } => self.flow.on_reply(&route, attempt, reply, now),
                Event::Due { route, attempt } => self.flow.on_due(&route, attempt, now),
                Event::Relooked(routes) => {
                    let routes = routes.map(|r| self.remember(r));
                    self.flow.on_relookup(routes, now)
                }
            };
            self.apply(actions);
        }
        if let Some(dead) = self.flow.dead().cloned() {
            self.shared
                .dead
                .send(&self.msg, &dead.reason, &dead.detail)
                .await;
        }
        self.shared.settle(self.origin);
    }
}
