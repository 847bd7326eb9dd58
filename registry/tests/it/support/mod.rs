//! Registry scenarios shared by the back-end test modules (in-process, single Redis node,
//! Redis Cluster): each module builds a [`Harness`] and runs the same checks, so the
//! back ends are held to identical semantics. The harness can also look under the hood
//! (raw fields, key TTL) to check pruning and the TTL rule, which the public API hides.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{ClientLike, Config, HashesInterface, KeysInterface};
use herald_protocol::registry_record::{conn_nonce, user_key, RegistryRecord};
use herald_registry::{
    unix_now_ms, EdgeInfo, InProcessRegistry, OpOutcome, Registration, Registry, RegistryOp,
    Unregistration,
};

/// A registry plus a way to see its raw storage.
pub(crate) struct Harness {
    /// The registry under test.
    pub registry: Registry,
    /// Raw access to the same storage.
    raw: Raw,
    /// Prefix making this run's user ids unique.
    pub prefix: String,
}

/// Raw storage access.
enum Raw {
    /// The in-process maps.
    InProcess(InProcessRegistry),
    /// A separate fred client.
    Redis(fred::clients::Client),
}

/// Tight client settings so failures show quickly in tests.
pub(crate) fn test_options() -> herald_registry::RedisOptions {
    herald_registry::RedisOptions {
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        unresponsive_timeout: Duration::from_secs(1),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(500),
        max_command_attempts: 1,
    }
}

/// A current-thread runtime, the flavour the edge's control thread uses.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A unique prefix for user ids.
pub(crate) fn unique_prefix(tag: &str) -> String {
    format!("{tag}-{:x}", fastrand::u64(..))
}

impl Harness {
    /// A harness over a fresh in-process registry.
    pub(crate) fn in_process(tag: &str) -> Harness {
        let inner = InProcessRegistry::new();
        Harness {
            registry: Registry::InProcess(inner.clone()),
            raw: Raw::InProcess(inner),
            prefix: unique_prefix(tag),
        }
    }

    /// A harness over Redis at `url` (`redis://` or `redis-cluster://`).
    pub(crate) async fn redis(url: &str, tag: &str) -> Harness {
        let registry = Registry::connect(url, &test_options())
            .await
            .expect("connect registry");
        let raw = fred::types::Builder::from_config(Config::from_url(url).expect("url"))
            .build()
            .expect("raw client");
        raw.init().await.expect("raw client connects");
        Harness {
            registry,
            raw: Raw::Redis(raw),
            prefix: unique_prefix(tag),
        }
    }

    /// A user id unique to this run.
    pub(crate) fn user(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The raw fields of `user`'s key, expired ones included, sorted by device.
    pub(crate) async fn raw_fields(&self, user: &str) -> Vec<(String, RegistryRecord)> {
        match &self.raw {
            Raw::InProcess(r) => r.raw_fields(user),
            Raw::Redis(c) => {
                let map: HashMap<String, String> =
                    c.hgetall(user_key(user)).await.expect("hgetall");
                let mut fields: Vec<(String, RegistryRecord)> = map
                    .into_iter()
                    .map(|(d, v)| (d, RegistryRecord::decode(&v).expect("stored value decodes")))
                    .collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                fields
            }
        }
    }

    /// Milliseconds until `user`'s key expires at `now_ms`: `None` when there is no key,
    /// `Some(-1)` when it has no TTL.
    pub(crate) async fn key_ttl_ms(&self, user: &str, now_ms: u64) -> Option<i64> {
        match &self.raw {
            Raw::InProcess(r) => {
                if r.raw_fields(user).is_empty() {
                    None
                } else {
                    Some(
                        r.key_expires_at_ms(user)
                            .map_or(-1, |at| at as i64 - now_ms as i64),
                    )
                }
            }
            Raw::Redis(c) => {
                let ttl: i64 = c.pttl(user_key(user)).await.expect("pttl");
                (ttl != -2).then_some(ttl)
            }
        }
    }
}

impl Harness {
    /// Deletes `user`'s history keys, as a flush or a failover without them would.
    pub(crate) async fn drop_history(&self, user: &str) {
        match &self.raw {
            Raw::InProcess(r) => r.drop_history(user),
            Raw::Redis(c) => {
                let _: i64 = c
                    .del(vec![
                        herald_protocol::history::history_key(user),
                        herald_protocol::history::epoch_key(user),
                    ])
                    .await
                    .expect("del");
            }
        }
    }
}

/// The history: appends give increasing positions and route like a look-up; reads give what
/// came after a position, in order and intact, or say why not (trimmed, lost).
pub(crate) async fn history_append_and_read(h: &Harness) {
    use herald_protocol::history::{NotRecovered, Position};
    use herald_registry::{Append, HistorySettings, Recovery};
    let settings = HistorySettings {
        size: 5,
        ttl: Duration::from_secs(60),
    };
    let user = h.user("hist");
    let now = unix_now_ms();
    h.registry
        .register(
            &[registration(&user, "phone", "edge-a", 1, 7, now + 60_000)],
            now,
        )
        .await
        .expect("register");
    let push = |id: &'static str,
                device: Option<&'static str>,
                expires: u64,
                payload: &'static [u8]| Append {
        user: &user,
        device,
        message_id: id,
        expires_at_ms: expires,
        payload,
    };
    let batch = [
        push("m1", None, u64::MAX, b"one"),
        push("m2", Some("laptop"), now + 1, &[0, 159, 255]),
        push("m3", None, u64::MAX, b"three\nlines"),
    ];
    let appended: Vec<_> = h
        .registry
        .append_history(&batch, &settings, now)
        .await
        .into_iter()
        .map(|r| r.expect("append"))
        .collect();
    for a in &appended {
        assert_eq!(a.locations.len(), 1, "the look-up rides with the append");
        assert_eq!(a.locations[0].device, "phone");
        assert_eq!(a.position.epoch, appended[0].position.epoch);
    }
    assert!(appended[0].position.id < appended[1].position.id);
    assert!(appended[1].position.id < appended[2].position.id);
    let (p1, p3) = (appended[0].position, appended[2].position);
    match h
        .registry
        .read_history(&user, &p1, now)
        .await
        .expect("read")
    {
        Recovery::Recovered {
            epoch,
            entries,
            last,
        } => {
            assert_eq!(epoch, p1.epoch);
            assert_eq!(last, p3.id);
            let got: Vec<_> = entries
                .iter()
                .map(|e| {
                    (
                        e.message_id.as_str(),
                        e.device.as_deref(),
                        e.expires_at_ms,
                        e.payload.as_slice(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("m2", Some("laptop"), now + 1, &[0u8, 159, 255][..]),
                    ("m3", None, u64::MAX, &b"three\nlines"[..]),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    match h
        .registry
        .read_history(&user, &p3, now)
        .await
        .expect("read")
    {
        Recovery::Recovered { entries, last, .. } => {
            assert!(entries.is_empty());
            assert_eq!(last, p3.id);
        }
        other => panic!("{other:?}"),
    }
    let foreign = Position {
        epoch: p1.epoch ^ 1,
        ..p1
    };
    assert_eq!(
        h.registry
            .read_history(&user, &foreign, now)
            .await
            .expect("read"),
        Recovery::NotRecovered(NotRecovered::EpochChanged)
    );
    // Three more: p1 is trimmed (size 5), p3 is still there.
    let more: Vec<Append<'_>> = (0..3).map(|_| push("mx", None, u64::MAX, b"x")).collect();
    for r in h.registry.append_history(&more, &settings, now).await {
        r.expect("append");
    }
    assert_eq!(
        h.registry
            .read_history(&user, &p1, now)
            .await
            .expect("read"),
        Recovery::NotRecovered(NotRecovered::TooOld)
    );
    assert!(matches!(
        h.registry.read_history(&user, &p3, now).await.expect("read"),
        Recovery::Recovered { ref entries, .. } if entries.len() == 3
    ));
    // The history is lost: the next append starts a new epoch, old positions say so.
    h.drop_history(&user).await;
    let fresh = h
        .registry
        .append_history(&[push("m9", None, u64::MAX, b"nine")], &settings, now)
        .await
        .pop()
        .expect("one result")
        .expect("append");
    assert_ne!(
        fresh.position.epoch, p3.epoch,
        "a lost history gets a new epoch"
    );
    assert_eq!(
        h.registry
            .read_history(&user, &p3, now)
            .await
            .expect("read"),
        Recovery::NotRecovered(NotRecovered::EpochChanged)
    );
    // A user nobody pushed to has no history at all.
    assert_eq!(
        h.registry
            .read_history(&h.user("nobody"), &p3, now)
            .await
            .expect("read"),
        Recovery::NotRecovered(NotRecovered::EpochChanged)
    );
}

/// A registration of `user`/`device` by connection `nonce` on `node`.
pub(crate) fn registration(
    user: &str,
    device: &str,
    node: &str,
    shard: u16,
    nonce: u64,
    expires: u64,
) -> Registration {
    Registration {
        user: user.to_owned(),
        device: device.to_owned(),
        record: RegistryRecord {
            node_id: node.to_owned(),
            shard,
            conn_nonce: nonce,
            expires_at_ms: expires,
        },
    }
}

/// The unregistration of connection `nonce` of `user`/`device`.
pub(crate) fn unregistration(user: &str, device: &str, nonce: u64) -> Unregistration {
    Unregistration {
        user: user.to_owned(),
        device: device.to_owned(),
        conn_nonce: nonce,
    }
}

/// One batch holding several operations on the same keys, interleaved with another user's:
/// each sees the effect of the ones before it (the Redis back end sends a node's operations
/// as one script call that reads each key once up front).
pub(crate) async fn one_batch_many_operations_per_key(h: &Harness) {
    let now = unix_now_ms();
    let (u1, u2) = (h.user("batch-1"), h.user("batch-2"));
    let exp = now + 60_000;
    let ops = vec![
        RegistryOp::Register(registration(&u1, "d", "edge-a", 1, 10, exp)),
        RegistryOp::Unregister(unregistration(&u2, "d", 1)),
        RegistryOp::Register(registration(&u1, "d", "edge-a", 2, 5, exp)),
        RegistryOp::Register(registration(&u2, "d", "edge-b", 1, 3, exp)),
        RegistryOp::Unregister(unregistration(&u1, "d", 5)),
        RegistryOp::Unregister(unregistration(&u1, "d", 10)),
        RegistryOp::Register(registration(&u1, "d", "edge-b", 2, 20, exp)),
        RegistryOp::Register(registration(&u1, "d2", "edge-a", 1, 30, exp)),
        RegistryOp::Unregister(unregistration(&u2, "d", 3)),
        RegistryOp::Register(registration(&u2, "d", "edge-b", 2, 4, exp)),
    ];
    let outcomes: Vec<OpOutcome> = h
        .registry
        .apply(&ops, now)
        .await
        .into_iter()
        .map(|r| r.expect("applied"))
        .collect();
    use OpOutcome::*;
    assert_eq!(
        outcomes,
        vec![
            Registered, Absent, Superseded, Registered, NotOwner, Removed, Registered, Registered,
            Removed, Registered
        ]
    );
    let found = h.registry.lookup(&[&u1, &u2], now).await.unwrap();
    let nonces = |i: usize| -> Vec<(String, u64)> {
        found[i]
            .iter()
            .map(|l| (l.device.clone(), l.record.conn_nonce))
            .collect()
    };
    assert_eq!(nonces(0), vec![("d".into(), 20), ("d2".into(), 30)]);
    assert_eq!(nonces(1), vec![("d".into(), 4)]);
}

/// Register → look up → unregister (wrong nonce first, then the right one).
pub(crate) async fn register_lookup_unregister(h: &Harness) {
    let now = unix_now_ms();
    let user = h.user("alice");
    let nonce = conn_nonce(now, 1);
    let reg = registration(&user, "phone", "edge-a", 3, nonce, now + 600_000);
    h.registry
        .register(std::slice::from_ref(&reg), now)
        .await
        .unwrap();

    let found = h.registry.lookup(&[&user], now).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 1);
    assert_eq!(found[0][0].device, "phone");
    assert_eq!(found[0][0].record, reg.record);

    let stale = h
        .registry
        .unregister(&[unregistration(&user, "phone", nonce - 1)])
        .await
        .unwrap();
    assert_eq!((stale.removed, stale.not_owner, stale.absent), (0, 1, 0));
    assert_eq!(
        h.registry.lookup(&[&user], now).await.unwrap()[0].len(),
        1,
        "non-owner removed it"
    );

    let done = h
        .registry
        .unregister(&[
            unregistration(&user, "phone", nonce),
            unregistration(&user, "phone", nonce),
        ])
        .await
        .unwrap();
    assert_eq!((done.removed, done.not_owner, done.absent), (1, 0, 1));
    assert!(h.registry.lookup(&[&user], now).await.unwrap()[0].is_empty());
    assert_eq!(
        h.key_ttl_ms(&user, now).await,
        None,
        "last device gone: key deleted"
    );
}

/// Several devices per user, several users per batch, order of answers = order of users.
pub(crate) async fn multi_device_users(h: &Harness) {
    let now = unix_now_ms();
    let (bob, carol, nobody) = (h.user("bob"), h.user("carol"), h.user("nobody"));
    let regs = vec![
        registration(
            &bob,
            "phone",
            "edge-a",
            0,
            conn_nonce(now, 1),
            now + 300_000,
        ),
        registration(
            &bob,
            "laptop",
            "edge-b",
            5,
            conn_nonce(now, 2),
            now + 600_000,
        ),
        registration(
            &bob,
            "tablet",
            "edge-a",
            1,
            conn_nonce(now, 3),
            now + 400_000,
        ),
        registration(
            &carol,
            "phone",
            "edge-c",
            2,
            conn_nonce(now, 4),
            now + 500_000,
        ),
    ];
    h.registry.register(&regs, now).await.unwrap();
    let found = h
        .registry
        .lookup(&[&bob, &nobody, &carol, &bob], now)
        .await
        .unwrap();
    let devices = |i: usize| {
        found[i]
            .iter()
            .map(|l| l.device.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(devices(0), ["laptop", "phone", "tablet"]);
    assert!(found[1].is_empty());
    assert_eq!(devices(2), ["phone"]);
    assert_eq!(found[3], found[0]);
    assert_eq!(found[0][0].record, regs[1].record);

    let ttl = h.key_ttl_ms(&bob, now).await.expect("bob has a key");
    assert!(
        (590_000..=600_000).contains(&ttl),
        "key TTL = max expiry - now, got {ttl}"
    );

    let tally = h
        .registry
        .unregister(&[unregistration(&bob, "laptop", conn_nonce(now, 2))])
        .await
        .unwrap();
    assert_eq!(tally.removed, 1);
    let found = h.registry.lookup(&[&bob], now).await.unwrap();
    assert_eq!(
        found[0]
            .iter()
            .map(|l| l.device.as_str())
            .collect::<Vec<_>>(),
        ["phone", "tablet"]
    );
    let ttl = h.key_ttl_ms(&bob, now).await.unwrap();
    assert!(
        ttl > 590_000 - 5_000,
        "unregister does not shorten the key TTL, got {ttl}"
    );
}

/// Expired fields are ignored by look-ups and pruned by the next register; the key TTL is
/// set on creation and only ever extended.
pub(crate) async fn expired_fields_ignored_and_pruned(h: &Harness) {
    let now = unix_now_ms();
    let user = h.user("dave");
    let short = registration(
        &user,
        "old-phone",
        "edge-a",
        0,
        conn_nonce(now, 1),
        now + 1_000,
    );
    let long = registration(
        &user,
        "laptop",
        "edge-a",
        1,
        conn_nonce(now, 2),
        now + 120_000,
    );
    h.registry
        .register(std::slice::from_ref(&short), now)
        .await
        .unwrap();
    let ttl = h.key_ttl_ms(&user, now).await.expect("key exists");
    assert!(
        (0..=1_000).contains(&ttl),
        "fresh key gets a TTL (plain PEXPIRE), got {ttl}"
    );
    h.registry
        .register(std::slice::from_ref(&long), now)
        .await
        .unwrap();
    let ttl = h.key_ttl_ms(&user, now).await.unwrap();
    assert!(
        ttl > 110_000,
        "TTL extended to the longest field, got {ttl}"
    );

    // Later (logical time): the short field has expired but is still stored.
    let later = now + 5_000;
    let found = h.registry.lookup(&[&user], later).await.unwrap();
    assert_eq!(found[0].len(), 1, "expired field ignored");
    assert_eq!(found[0][0].device, "laptop");
    assert_eq!(
        h.raw_fields(&user).await.len(),
        2,
        "not pruned before the next register"
    );

    // The next register prunes it, and a shorter record does not shorten the key TTL.
    let brief = registration(
        &user,
        "watch",
        "edge-b",
        2,
        conn_nonce(later, 3),
        later + 2_000,
    );
    let outcomes = h
        .registry
        .apply(&[RegistryOp::Register(brief)], later)
        .await;
    assert_eq!(outcomes[0].as_ref().unwrap(), &OpOutcome::Registered);
    let devices: Vec<String> = h
        .raw_fields(&user)
        .await
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(devices, ["laptop", "watch"], "expired field pruned");
    let ttl = h.key_ttl_ms(&user, now).await.unwrap();
    assert!(ttl > 100_000, "TTL never shortened, got {ttl}");

    // A registration that has already expired is not written (but still prunes).
    let dead = registration(&user, "ghost", "edge-b", 0, conn_nonce(later, 4), later - 1);
    let outcomes = h.registry.apply(&[RegistryOp::Register(dead)], later).await;
    assert_eq!(outcomes[0].as_ref().unwrap(), &OpOutcome::AlreadyExpired);
    assert_eq!(h.raw_fields(&user).await.len(), 2);
}

/// A user with more devices than a register prunes whole (64): expired fields go by the
/// registers' random samples — all 150 within 100 later registers (each survives one with
/// probability ≤ 1 − 32/250, so 100 with < 1e-5) — and live ones are never touched.
pub(crate) async fn many_devices_pruned_by_sample(h: &Harness) {
    let now = unix_now_ms();
    let user = h.user("fleet");
    let ops: Vec<RegistryOp> = (0..250u16)
        .map(|i| {
            // 150 short-lived devices, 100 long-lived ones.
            let expires = if i < 150 { now + 1_000 } else { now + 600_000 };
            RegistryOp::Register(registration(
                &user,
                &format!("dev{i}"),
                "edge-a",
                i % 4,
                conn_nonce(now, i),
                expires,
            ))
        })
        .collect();
    for outcome in h.registry.apply(&ops, now).await {
        assert_eq!(outcome.unwrap(), OpOutcome::Registered);
    }
    assert_eq!(h.raw_fields(&user).await.len(), 250);
    let later = now + 5_000;
    let mut registers = 0;
    while h.raw_fields(&user).await.len() > 100 + registers && registers < 100 {
        let op = RegistryOp::Register(registration(
            &user,
            &format!("late{registers}"),
            "edge-b",
            0,
            conn_nonce(later, registers as u16),
            later + 600_000,
        ));
        let outcome = h.registry.apply(&[op], later).await;
        assert_eq!(outcome[0].as_ref().unwrap(), &OpOutcome::Registered);
        registers += 1;
    }
    let fields = h.raw_fields(&user).await;
    assert_eq!(
        fields.len(),
        100 + registers,
        "every expired field pruned within {registers} registers"
    );
    assert!(
        fields.iter().all(|(_, r)| r.expires_at_ms > later),
        "only live fields remain"
    );
    let found = h.registry.lookup(&[&user], later).await.unwrap();
    assert_eq!(found[0].len(), 100 + registers, "live devices all found");
}

/// A stale edge's late register never overwrites a newer connection's record.
pub(crate) async fn newer_connection_wins(h: &Harness) {
    let now = unix_now_ms();
    let user = h.user("erin");
    let old = registration(
        &user,
        "phone",
        "edge-a",
        0,
        conn_nonce(now, 7),
        now + 60_000,
    );
    let new = registration(
        &user,
        "phone",
        "edge-b",
        4,
        conn_nonce(now + 50, 1),
        now + 60_050,
    );
    let out = h
        .registry
        .apply(
            &[
                RegistryOp::Register(new.clone()),
                RegistryOp::Register(old.clone()),
            ],
            now + 60,
        )
        .await;
    assert_eq!(out[0].as_ref().unwrap(), &OpOutcome::Registered);
    assert_eq!(out[1].as_ref().unwrap(), &OpOutcome::Superseded);
    let found = h.registry.lookup(&[&user], now + 60).await.unwrap();
    assert_eq!(found[0][0].record, new.record);
    // Re-asserting the same connection refreshes it.
    let out = h
        .registry
        .apply(&[RegistryOp::Register(new.clone())], now + 70)
        .await;
    assert_eq!(out[0].as_ref().unwrap(), &OpOutcome::Registered);
}

/// The race: `scenarios` users, each with connection 1 on edge A and connection 2 (newer) on
/// edge B or again on A, plus the late unregister of connection 1, applied in every possible
/// order (chosen at random per user, all six permutations). Afterwards each user's device
/// must hold connection 2's record: nothing lost, nothing removed by a non-owner.
pub(crate) async fn race_interleavings(h: &Harness, scenarios: usize) {
    let now = unix_now_ms();
    let perms: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut rounds: Vec<Vec<RegistryOp>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut expected = Vec::with_capacity(scenarios);
    let mut perm_counts = [0usize; 6];
    let mut same_edge = 0;
    for i in 0..scenarios {
        let user = h.user(&format!("race{i}"));
        let accepted = now - 10_000 + fastrand::u64(..5_000);
        let n1 = conn_nonce(accepted, fastrand::u16(..));
        let n2 = conn_nonce(accepted + 1 + fastrand::u64(..3_000), fastrand::u16(..));
        let edge2 = if fastrand::bool() {
            same_edge += 1;
            "edge-a"
        } else {
            "edge-b"
        };
        let ops = [
            RegistryOp::Register(registration(
                &user,
                "dev",
                "edge-a",
                1,
                n1,
                accepted + 600_000,
            )),
            RegistryOp::Register(registration(&user, "dev", edge2, 2, n2, accepted + 600_100)),
            RegistryOp::Unregister(unregistration(&user, "dev", n1)),
        ];
        let p = fastrand::usize(..6);
        perm_counts[p] += 1;
        for (round, &op_index) in perms[p].iter().enumerate() {
            rounds[round].push(ops[op_index].clone());
        }
        let RegistryOp::Register(winner) = &ops[1] else {
            unreachable!()
        };
        expected.push(winner.clone());
    }
    for round in &rounds {
        for chunk in round.chunks(1_000) {
            for (i, r) in h.registry.apply(chunk, now).await.into_iter().enumerate() {
                r.unwrap_or_else(|e| panic!("op {:?} failed: {e}", chunk[i]));
            }
        }
    }
    let mut lost = 0;
    for chunk in expected.chunks(1_000) {
        let users: Vec<&str> = chunk.iter().map(|r| r.user.as_str()).collect();
        let found = h.registry.lookup(&users, now).await.unwrap();
        for (want, got) in chunk.iter().zip(found) {
            if got.len() != 1 || got[0].record != want.record {
                lost += 1;
                if lost <= 5 {
                    eprintln!(
                        "race: {} expected {:?}, found {got:?}",
                        want.user, want.record
                    );
                }
            }
        }
    }
    eprintln!(
        "race: {scenarios} interleavings (orders {perm_counts:?}, {same_edge} same-edge reconnects): {lost} lost"
    );
    assert_eq!(lost, 0, "records lost or removed by a non-owner");
}

/// Edge membership: heartbeats, ageing out, removal.
pub(crate) async fn edge_membership(h: &Harness) {
    let now = unix_now_ms();
    let node = h.user("edge");
    let info = EdgeInfo {
        node_id: node.clone(),
        delivery_host: "127.0.0.1".into(),
        delivery_base_port: 7100,
        shards: 4,
        heartbeat_ms: now,
    };
    h.registry.heartbeat_edge(&info).await.unwrap();
    let live = h.registry.live_edges(now + 1_000, 15_000).await.unwrap();
    assert!(live.contains(&info), "{live:?}");
    let live = h.registry.live_edges(now + 16_000, 15_000).await.unwrap();
    assert!(!live.iter().any(|e| e.node_id == node), "aged out");
    h.registry.remove_edge(&node).await.unwrap();
    let live = h.registry.live_edges(now, u64::MAX).await.unwrap();
    assert!(!live.iter().any(|e| e.node_id == node), "removed");
    let bad = EdgeInfo {
        delivery_host: "a|b".into(),
        ..info
    };
    assert!(h.registry.heartbeat_edge(&bad).await.is_err());
}

/// Invalid input is refused before anything is sent.
pub(crate) async fn invalid_input_is_refused(h: &Harness) {
    let now = unix_now_ms();
    let user = h.user("frank");
    let good = registration(&user, "phone", "edge-a", 0, 1, now + 1_000);
    let bad = registration(&user, "", "edge-a", 0, 1, now + 1_000);
    let err = h.registry.register(&[good, bad], now).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        h.registry.lookup(&[&user], now).await.unwrap()[0].is_empty(),
        "nothing sent"
    );
}

/// Every scenario except the race, in order.
pub(crate) async fn all_basic(h: &Harness) {
    register_lookup_unregister(h).await;
    one_batch_many_operations_per_key(h).await;
    multi_device_users(h).await;
    expired_fields_ignored_and_pruned(h).await;
    newer_connection_wins(h).await;
    edge_membership(h).await;
    invalid_input_is_refused(h).await;
}

/// The fault-injection tests (failover, re-assert after a restart, phantom expiry) take this
/// lock so they never run beside each other: each kills, freezes or restarts Redis processes
/// and waits for the cluster to settle, which two at once on a loaded 2-core machine can
/// stretch past any sensible bound.
pub(crate) fn faults_one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
