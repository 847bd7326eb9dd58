//! # What happens to one push after its look-up — the forwarding policy, sans-io
//!
//! A push resolves to routes, one per owning `(node, shard)` (every live shard for a
//! broadcast). [`PushFlow`] tracks each route from its first send to a final state and tells
//! its driver what to do next ([`Action`]s); it never touches a socket or a clock (callers pass
//! `now_ms` and replies in). The rules:
//!
//! - `delivered`, `expired`, `slow_consumer`, `unencodable` answers are final for their route.
//! - A route whose node is not a live edge ([`RouteStatus::DeadNode`], known from the look-up)
//!   is never sent to: it counts as `stale_route` and is handled like a `not_here` answer
//!   (and, as before, counted as one).
//! - `not_here` (the registry entry was stale) or `draining` (the shard is emptying; its
//!   clients reconnect elsewhere) on a user route: the route is final, the driver invalidates
//!   the look-up cache and looks up once more ([`Action::Relookup`], after a backoff for
//!   `draining` to give clients time to reconnect). Routes the second look-up adds are sent
//!   once; routes it repeats are not. If it adds none — or a second-round route answers
//!   `not_here` again — the target counts as offline. Broadcast routes take these answers as
//!   final.
//! - A timeout, a lost connection or an unreachable edge is retried on the same route with
//!   backoff up to `max_attempts`; then the route failed and the push is dead-lettered.
//!   An unencodable frame fails at once.
//! - Nothing is sent once the push expired: such routes end as `expired_before_send`.
//!
//! The push is finished when every route is final and no look-up is pending; [`PushFlow::dead`]
//! then says whether it goes to the dead-letter topic. Backoff jitter comes from a generator
//! seeded by the caller, so a test replays the same delays.

use std::sync::Arc;
use std::time::Duration;

use herald_protocol::delivery::{is_expired, Answer, Outcome};

use crate::outcome::{DeadReason, PushOutcome, RouteFailure};

/// An edge shard's delivery port, by node id and shard index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The edge node id (as in registry records and membership).
    pub node: Arc<str>,
    /// The shard index on that node.
    pub shard: u16,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.shard)
    }
}

/// Whether a looked-up route can be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStatus {
    /// Its node is a live edge with a delivery port for the shard.
    Live,
    /// Its node is not a live edge (or has no such shard): the registry record is stale.
    DeadNode,
}

/// Why a send got no answer (the driver's transport error, reduced to what the policy needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// The class: retried or final, and the metric labels.
    pub failure: RouteFailure,
    /// Human detail, for the dead letter.
    pub detail: String,
}

/// What came back for one send: the edge's answer, or why there is none.
pub type Reply = Result<Answer, SendFailure>;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the push on `route` now; report the reply with [`PushFlow::on_reply`].
    Send {
        /// Where.
        route: Route,
        /// Attempt number on this route (1 = first).
        attempt: u32,
    },
    /// Wait `after`, then call [`PushFlow::on_due`] for this route and attempt.
    Retry {
        /// Where.
        route: Route,
        /// The attempt to make.
        attempt: u32,
        /// Backoff.
        after: Duration,
    },
    /// Wait `after`, invalidate the user's cached look-up, look it up again and report the
    /// routes with [`PushFlow::on_relookup`].
    Relookup {
        /// Backoff before the look-up.
        after: Duration,
    },
}

/// A countable event (exported as `herald_processor_outcomes_total{outcome}` etc.).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// A route (or the whole push) reached a final state.
    Outcome(PushOutcome),
    /// An edge wrote the push to `connections` connections.
    Delivered {
        /// Connections written to.
        connections: u32,
    },
    /// A route is retried after this failure.
    Retry(RouteFailure),
}

/// Why a push goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The class: the `herald-dead-reason` header.
    pub reason: DeadReason,
    /// Human detail: the `herald-dead-detail` header.
    pub detail: String,
}

/// Per-flow tuning.
#[derive(Debug, Clone, Copy)]
pub struct FlowParams {
    /// Attempts per route.
    pub max_attempts: u32,
    /// First retry backoff.
    pub retry_backoff: Duration,
    /// Retry backoff cap.
    pub retry_backoff_max: Duration,
}

impl FlowParams {
    /// Backoff before `attempt` (2 = first retry), doubling, capped; `jitter` in 0..1 spreads
    /// it ±20 %.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(2).min(20);
        let capped = self
            .retry_backoff
            .saturating_mul(1 << exp)
            .min(self.retry_backoff_max);
        capped.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteState {
    /// Sent (or about to be), waiting for the reply of `attempt`.
    InFlight { attempt: u32 },
    /// Waiting for the backoff before `attempt`.
    Backoff { attempt: u32 },
    /// Done; the flow needs nothing more from this route.
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relookup {
    /// No route answered not_here/draining yet.
    NotNeeded,
    /// The driver is looking up again.
    Pending,
    /// The one relookup happened; further not_here answers mean offline.
    Done,
}

/// The forwarding state of one push.
#[derive(Debug, Clone)]
pub struct PushFlow {
    /// Broadcasts never re-look-up.
    broadcast: bool,
    /// Unix ms after which nothing is sent (`NEVER_EXPIRES` for none).
    expires_at_ms: u64,
    /// Tuning.
    params: FlowParams,
    /// Every route ever tried, with its state.
    routes: Vec<(Route, RouteState)>,
    /// Re-look-up progress.
    relookup: Relookup,
    /// First route failure, if any: the push is dead-lettered.
    dead: Option<DeadLetter>,
    /// Events not yet collected by the driver.
    tallies: Vec<Tally>,
    /// Jitter source for backoffs.
    rng: fastrand::Rng,
}

impl PushFlow {
    /// A flow for a push expiring at `expires_at_ms` (`broadcast` if it targets everyone);
    /// `jitter_seed` seeds the backoff jitter.
    pub fn new(
        params: FlowParams,
        broadcast: bool,
        expires_at_ms: u64,
        jitter_seed: u64,
    ) -> PushFlow {
        PushFlow {
            broadcast,
            expires_at_ms,
            params,
            routes: Vec::new(),
            relookup: Relookup::NotNeeded,
            dead: None,
            tallies: Vec::new(),
            rng: fastrand::Rng::with_seed(jitter_seed),
        }
    }

    /// Starts with the routes of the first look-up.
    pub fn start(&mut self, routes: Vec<(Route, RouteStatus)>, now_ms: u64) -> Vec<Action> {
        if is_expired(self.expires_at_ms, now_ms) {
            self.tallies
                .push(Tally::Outcome(PushOutcome::ExpiredBeforeSend));
            return Vec::new();
        }
        if routes.is_empty() {
            self.tallies.push(Tally::Outcome(PushOutcome::Offline));
            return Vec::new();
        }
        self.add_routes(routes).1
    }

    /// Adds the routes not tried yet: live ones are sent, dead ones are final at once.
    /// Returns how many were new, and the actions.
    fn add_routes(&mut self, routes: Vec<(Route, RouteStatus)>) -> (usize, Vec<Action>) {
        let mut actions = Vec::new();
        let mut new = 0;
        for (route, status) in routes {
            if self.routes.iter().any(|(r, _)| *r == route) {
                continue;
            }
            new += 1;
            match status {
                RouteStatus::Live => {
                    self.routes
                        .push((route.clone(), RouteState::InFlight { attempt: 1 }));
                    actions.push(Action::Send { route, attempt: 1 });
                }
                RouteStatus::DeadNode => {
                    self.routes.push((route, RouteState::Final));
                    self.tallies.push(Tally::Outcome(PushOutcome::StaleRoute));
                    // Counted as not_here too, as it always was.
                    self.tallies
                        .push(Tally::Outcome(PushOutcome::Answered(Outcome::NotHere)));
                    actions.extend(self.gone(Outcome::NotHere));
                }
            }
        }
        (new, actions)
    }

    /// A route answered `not_here` or `draining` (or its node is dead): look the user up
    /// once more, or — after that — count the target offline. Broadcasts take it as final.
    fn gone(&mut self, outcome: Outcome) -> Vec<Action> {
        if self.broadcast {
            return Vec::new();
        }
        let after = if outcome == Outcome::Draining {
            self.params.retry_backoff_max
        } else {
            Duration::ZERO
        };
        match self.relookup {
            Relookup::NotNeeded => {
                self.relookup = Relookup::Pending;
                vec![Action::Relookup { after }]
            }
            // The pending look-up covers this route too.
            Relookup::Pending => Vec::new(),
            Relookup::Done => {
                self.tallies.push(Tally::Outcome(PushOutcome::Offline));
                Vec::new()
            }
        }
    }

    fn state_mut(&mut self, route: &Route) -> Option<&mut RouteState> {
        self.routes
            .iter_mut()
            .find(|(r, _)| r == route)
            .map(|(_, s)| s)
    }

    /// Reports the reply to attempt `attempt` on `route`. Replies for attempts the flow is not
    /// waiting for are ignored.
    pub fn on_reply(
        &mut self,
        route: &Route,
        attempt: u32,
        reply: Reply,
        now_ms: u64,
    ) -> Vec<Action> {
        let params = self.params;
        let jitter = self.rng.f64();
        let expired = is_expired(self.expires_at_ms, now_ms);
        let Some(state) = self.state_mut(route) else {
            return Vec::new();
        };
        if *state != (RouteState::InFlight { attempt }) {
            return Vec::new();
        }
        match reply {
            Ok(answer) => {
                *state = RouteState::Final;
                self.tallies
                    .push(Tally::Outcome(PushOutcome::Answered(answer.outcome)));
                match answer.outcome {
                    Outcome::Delivered => {
                        self.tallies.push(Tally::Delivered {
                            connections: answer.delivered,
                        });
                        Vec::new()
                    }
                    Outcome::NotHere | Outcome::Draining => self.gone(answer.outcome),
                    _ => Vec::new(),
                }
            }
            Err(SendFailure { failure, detail }) => {
                if failure.is_retryable() && expired {
                    *state = RouteState::Final;
                    self.tallies
                        .push(Tally::Outcome(PushOutcome::ExpiredBeforeSend));
                    return Vec::new();
                }
                if failure.is_retryable() && attempt < params.max_attempts {
                    let next = attempt + 1;
                    *state = RouteState::Backoff { attempt: next };
                    self.tallies.push(Tally::Retry(failure));
                    let after = params.backoff(next, jitter);
                    return vec![Action::Retry {
                        route: route.clone(),
                        attempt: next,
                        after,
                    }];
                }
                *state = RouteState::Final;
                self.tallies
                    .push(Tally::Outcome(PushOutcome::Failed(failure)));
                if self.dead.is_none() {
                    self.dead = Some(DeadLetter {
                        reason: DeadReason::Route(failure),
                        detail: format!("{route}: {detail} (attempt {attempt})"),
                    });
                }
                Vec::new()
            }
        }
    }

    /// The backoff before `attempt` on `route` elapsed: send again unless the push expired.
    pub fn on_due(&mut self, route: &Route, attempt: u32, now_ms: u64) -> Vec<Action> {
        let expired = is_expired(self.expires_at_ms, now_ms);
        let Some(state) = self.state_mut(route) else {
            return Vec::new();
        };
        if *state != (RouteState::Backoff { attempt }) {
            return Vec::new();
        }
        if expired {
            *state = RouteState::Final;
            self.tallies
                .push(Tally::Outcome(PushOutcome::ExpiredBeforeSend));
            return Vec::new();
        }
        *state = RouteState::InFlight { attempt };
        vec![Action::Send {
            route: route.clone(),
            attempt,
        }]
    }

    /// The result of the re-look-up: new routes are sent once; none new means offline. A
    /// failed look-up (`None`) counts the target offline too — the registry was asked twice.
    pub fn on_relookup(
        &mut self,
        routes: Option<Vec<(Route, RouteStatus)>>,
        now_ms: u64,
    ) -> Vec<Action> {
        if self.relookup != Relookup::Pending {
            return Vec::new();
        }
        self.relookup = Relookup::Done;
        if is_expired(self.expires_at_ms, now_ms) {
            self.tallies
                .push(Tally::Outcome(PushOutcome::ExpiredBeforeSend));
            return Vec::new();
        }
        let (new, actions) = match routes {
            Some(routes) => self.add_routes(routes),
            None => (0, Vec::new()),
        };
        if new == 0 {
            self.tallies.push(Tally::Outcome(PushOutcome::Offline));
        }
        actions
    }

    /// Events since the last call.
    pub fn take_tallies(&mut self) -> Vec<Tally> {
        std::mem::take(&mut self.tallies)
    }

    /// True when every route is final and no look-up is pending.
    pub fn is_finished(&self) -> bool {
        self.relookup != Relookup::Pending
            && self.routes.iter().all(|(_, s)| *s == RouteState::Final)
    }

    /// Whether (and why) the push must be dead-lettered; meaningful once finished.
    pub fn dead(&self) -> Option<&DeadLetter> {
        self.dead.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::delivery::NEVER_EXPIRES;

    fn params() -> FlowParams {
        FlowParams {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(100),
        }
    }

    fn r(node: &str, shard: u16) -> Route {
        Route {
            node: node.into(),
            shard,
        }
    }

    fn live(routes: Vec<Route>) -> Vec<(Route, RouteStatus)> {
        routes.into_iter().map(|r| (r, RouteStatus::Live)).collect()
    }

    fn fail(failure: RouteFailure, detail: &str) -> Reply {
        Err(SendFailure {
            failure,
            detail: detail.into(),
        })
    }

    fn answer(outcome: Outcome, delivered: u32) -> Reply {
        Ok(Answer {
            seq: 0,
            outcome,
            delivered,
        })
    }

    fn outcomes(f: &mut PushFlow) -> Vec<&'static str> {
        f.take_tallies()
            .into_iter()
            .filter_map(|t| match t {
                Tally::Outcome(o) => Some(o.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn delivered_on_every_route_finishes_clean() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        let a = f.start(live(vec![r("n1", 0), r("n2", 3)]), 0);
        assert_eq!(a.len(), 2);
        assert!(!f.is_finished());
        assert!(f
            .on_reply(&r("n1", 0), 1, answer(Outcome::Delivered, 2), 0)
            .is_empty());
        assert!(!f.is_finished());
        f.on_reply(&r("n2", 3), 1, answer(Outcome::Delivered, 1), 0);
        assert!(f.is_finished());
        assert!(f.dead().is_none());
        let t = f.take_tallies();
        assert!(t.contains(&Tally::Delivered { connections: 2 }));
        assert_eq!(
            t.iter()
                .filter(|x| x == &&Tally::Outcome(PushOutcome::Answered(Outcome::Delivered)))
                .count(),
            2
        );
    }

    #[test]
    fn no_route_is_offline_and_expired_is_never_sent() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        assert!(f.start(live(vec![]), 0).is_empty());
        assert!(f.is_finished());
        assert_eq!(outcomes(&mut f), ["offline"]);

        let mut f = PushFlow::new(params(), false, 1_000, 7);
        assert!(
            f.start(live(vec![r("n", 0)]), 1_000).is_empty(),
            "expiry instant is too late"
        );
        assert!(f.is_finished());
        assert_eq!(outcomes(&mut f), ["expired_before_send"]);
    }

    #[test]
    fn not_here_relooks_once_and_sends_only_new_routes() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0), r("b", 0)]), 0);
        let a = f.on_reply(&r("a", 0), 1, answer(Outcome::NotHere, 0), 0);
        assert_eq!(
            a,
            [Action::Relookup {
                after: Duration::ZERO
            }]
        );
        // b also says not_here while the relookup is pending: covered, no second relookup.
        assert!(f
            .on_reply(&r("b", 0), 1, answer(Outcome::NotHere, 0), 0)
            .is_empty());
        assert!(!f.is_finished(), "relookup pending");
        // The device moved to c; a is repeated and is not re-sent.
        let a = f.on_relookup(Some(live(vec![r("a", 0), r("c", 1)])), 0);
        assert_eq!(
            a,
            [Action::Send {
                route: r("c", 1),
                attempt: 1
            }]
        );
        // c says not_here too: offline, no third look-up.
        assert!(f
            .on_reply(&r("c", 1), 1, answer(Outcome::NotHere, 0), 0)
            .is_empty());
        assert!(f.is_finished());
        assert!(f.dead().is_none());
        assert_eq!(
            outcomes(&mut f),
            ["not_here", "not_here", "not_here", "offline"]
        );
    }

    #[test]
    fn relookup_with_nothing_new_or_failing_is_offline() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        f.on_reply(&r("a", 0), 1, answer(Outcome::NotHere, 0), 0);
        assert!(f.on_relookup(Some(live(vec![r("a", 0)])), 0).is_empty());
        assert!(f.is_finished());
        assert_eq!(outcomes(&mut f), ["not_here", "offline"]);

        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        f.on_reply(&r("a", 0), 1, answer(Outcome::NotHere, 0), 0);
        assert!(f.on_relookup(None, 0).is_empty());
        assert!(f.is_finished());
        assert_eq!(outcomes(&mut f), ["not_here", "offline"]);
    }

    #[test]
    fn draining_relooks_after_a_backoff() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        let a = f.on_reply(&r("a", 0), 1, answer(Outcome::Draining, 0), 0);
        assert_eq!(
            a,
            [Action::Relookup {
                after: Duration::from_millis(100)
            }]
        );
        let a = f.on_relookup(Some(live(vec![r("b", 0)])), 50);
        assert_eq!(a.len(), 1);
        f.on_reply(&r("b", 0), 1, answer(Outcome::Delivered, 1), 60);
        assert!(f.is_finished());
    }

    #[test]
    fn broadcast_takes_not_here_and_draining_as_final() {
        let mut f = PushFlow::new(params(), true, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0), r("a", 1)]), 0);
        assert!(f
            .on_reply(&r("a", 0), 1, answer(Outcome::Draining, 0), 0)
            .is_empty());
        assert!(f
            .on_reply(&r("a", 1), 1, answer(Outcome::Delivered, 10), 0)
            .is_empty());
        assert!(f.is_finished());
    }

    #[test]
    fn failures_retry_with_backoff_then_dead_letter() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        let a = f.on_reply(
            &r("a", 0),
            1,
            fail(RouteFailure::Timeout, "no answer in time"),
            0,
        );
        let [Action::Retry {
            attempt: 2, after, ..
        }] = a.as_slice()
        else {
            panic!("{a:?}");
        };
        assert!(*after >= Duration::from_millis(8) && *after <= Duration::from_millis(12));
        // A late reply for attempt 1 is ignored.
        assert!(f
            .on_reply(&r("a", 0), 1, answer(Outcome::Delivered, 1), 0)
            .is_empty());
        assert_eq!(
            f.on_due(&r("a", 0), 2, 10),
            [Action::Send {
                route: r("a", 0),
                attempt: 2
            }]
        );
        let a = f.on_reply(
            &r("a", 0),
            2,
            fail(RouteFailure::Unreachable, "edge unreachable: refused"),
            10,
        );
        let [Action::Retry {
            attempt: 3, after, ..
        }] = a.as_slice()
        else {
            panic!("{a:?}");
        };
        assert!(*after >= Duration::from_millis(16));
        f.on_due(&r("a", 0), 3, 40);
        assert!(f
            .on_reply(
                &r("a", 0),
                3,
                fail(RouteFailure::Timeout, "no answer in time"),
                40
            )
            .is_empty());
        assert!(f.is_finished());
        let dead = f.dead().unwrap();
        assert_eq!(dead.reason.as_str(), "edge-timeout");
        assert!(dead.detail.contains("a/0"), "{}", dead.detail);
        let t = f.take_tallies();
        assert_eq!(t.iter().filter(|x| matches!(x, Tally::Retry(_))).count(), 2);
        assert!(t
            .iter()
            .any(|x| matches!(x, Tally::Outcome(o) if o.as_str() == "failed_timeout")));
    }

    #[test]
    fn unencodable_fails_at_once_and_expiry_stops_retries() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        f.on_reply(
            &r("a", 0),
            1,
            fail(RouteFailure::Unencodable, "cannot encode: user too long"),
            0,
        );
        assert!(f.is_finished());
        assert_eq!(f.dead().unwrap().reason.as_str(), "unencodable");

        let mut f = PushFlow::new(params(), false, 100, 7);
        f.start(live(vec![r("a", 0)]), 0);
        f.on_reply(
            &r("a", 0),
            1,
            fail(RouteFailure::ConnectionLost, "connection lost: reset"),
            50,
        );
        assert!(f.on_due(&r("a", 0), 2, 100).is_empty());
        assert!(f.is_finished());
        assert!(
            f.dead().is_none(),
            "expired pushes are dropped, not dead-lettered"
        );
        assert!(outcomes(&mut f).contains(&"expired_before_send"));
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = FlowParams {
            max_attempts: 9,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(350),
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        assert!((ms(p.backoff(2, 0.5)) - 100.0).abs() < 1e-3);
        assert!((ms(p.backoff(3, 0.5)) - 200.0).abs() < 1e-3);
        assert!((ms(p.backoff(4, 0.5)) - 350.0).abs() < 1e-3);
        assert!((ms(p.backoff(40, 0.5)) - 350.0).abs() < 1e-3);
        assert!((ms(p.backoff(2, 0.0)) - 80.0).abs() < 1e-3);
        assert!((ms(p.backoff(2, 1.0)) - 120.0).abs() < 1e-3);
    }

    #[test]
    fn edge_side_outcomes_are_final() {
        for o in [
            Outcome::Expired,
            Outcome::SlowConsumer,
            Outcome::Unencodable,
            Outcome::RateLimited,
        ] {
            let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
            f.start(live(vec![r("a", 0)]), 0);
            assert!(f.on_reply(&r("a", 0), 1, answer(o, 0), 0).is_empty());
            assert!(f.is_finished());
            assert!(f.dead().is_none());
            assert_eq!(outcomes(&mut f), [o.as_str()]);
        }
    }

    #[test]
    fn a_dead_node_is_never_sent_to_and_relooks_like_not_here() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        let a = f.start(
            vec![
                (r("ghost", 0), RouteStatus::DeadNode),
                (r("a", 0), RouteStatus::Live),
            ],
            0,
        );
        assert_eq!(
            a,
            [
                Action::Relookup {
                    after: Duration::ZERO
                },
                Action::Send {
                    route: r("a", 0),
                    attempt: 1
                }
            ]
        );
        assert_eq!(outcomes(&mut f), ["stale_route", "not_here"]);
        f.on_reply(&r("a", 0), 1, answer(Outcome::Delivered, 1), 0);
        // The re-look-up repeats the dead route: it is not tried again; nothing new → offline.
        assert!(f
            .on_relookup(Some(vec![(r("ghost", 0), RouteStatus::DeadNode)]), 0)
            .is_empty());
        assert!(f.is_finished());
        assert!(f.dead().is_none());
        assert_eq!(outcomes(&mut f), ["delivered", "offline"]);
    }

    #[test]
    fn a_new_dead_route_after_the_relookup_is_offline_once() {
        let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, 7);
        f.start(live(vec![r("a", 0)]), 0);
        f.on_reply(&r("a", 0), 1, answer(Outcome::NotHere, 0), 0);
        assert!(f
            .on_relookup(Some(vec![(r("ghost", 1), RouteStatus::DeadNode)]), 0)
            .is_empty());
        assert!(f.is_finished());
        assert_eq!(
            outcomes(&mut f),
            ["not_here", "stale_route", "not_here", "offline"]
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_backoffs() {
        let delays = |seed| {
            let mut f = PushFlow::new(params(), false, NEVER_EXPIRES, seed);
            f.start(live(vec![r("a", 0)]), 0);
            let a = f.on_reply(&r("a", 0), 1, fail(RouteFailure::Timeout, "t"), 0);
            let [Action::Retry { after, .. }] = a.as_slice() else {
                panic!("{a:?}")
            };
            *after
        };
        assert_eq!(delays(1), delays(1));
        assert_ne!(delays(1), delays(2));
    }
}
