//! # The Kafka sender contract — topics, headers and targets
//!
//! Backends publish pushes to one of three priority topics; the record key is the target
//! user (so a user's pushes stay ordered on one partition), the value is the payload,
//! delivered verbatim, and `herald-*` headers say where it goes and until when. This module
//! names those topics and headers and parses a record's headers into [`PushHeaders`], which
//! the processor routes on. A record it cannot route goes to the dead-letter topic with a
//! `herald-dead-reason` header whose value is [`Malformed::reason`], a stable string
//! operators can alert on. The contract is documented in `docs/protocol.md` ("Kafka sender
//! contract").

use std::fmt;
use std::str::FromStr;

/// Topic for pushes that must overtake everything else.
pub const TOPIC_HIGH: &str = "herald.push.high";
/// Topic for ordinary pushes.
pub const TOPIC_NORMAL: &str = "herald.push.normal";
/// Topic for bulk pushes that may wait.
pub const TOPIC_LOW: &str = "herald.push.low";
/// Dead-letter topic: records the processor could not route or deliver, with a reason.
pub const TOPIC_DEAD: &str = "herald.push.dead";

/// Header: the push's unique id (UTF-8), handed to clients for de-duplication.
pub const HEADER_ID: &str = "herald-id";
/// Header: where the push goes — `user`, `user/device` or `*` (see [`Target`]).
pub const HEADER_TARGET: &str = "herald-target";
/// Header: unix time in ms (decimal) after which the push must not be delivered.
pub const HEADER_EXPIRES_AT: &str = "herald-expires-at";
/// Header: unix time in µs (decimal) the sender created the push, for latency accounting.
pub const HEADER_CREATED_AT: &str = "herald-created-at";
/// Header added to dead letters: why the record was dead-lettered.
pub const HEADER_DEAD_REASON: &str = "herald-dead-reason";

/// Longest user, device or push id in bytes. Far above real identifiers, far below what
/// would bloat registry keys or the delivery frame's `u16` strings.
pub const MAX_NAME_LEN: usize = 1024;

/// A push's priority, chosen by the topic it is published to. Ordered `High > Normal > Low`.
// Declaration order is the derived `Ord`: lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Bulk; served when nothing more urgent waits (subject to a starvation guard).
    Low,
    /// Ordinary pushes.
    Normal,
    /// Served before everything else.
    High,
}

impl Priority {
    /// Every priority, most urgent first: the order the processor polls its consumers in.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Parses `high`, `normal` or `low`.
    pub fn parse(text: &str) -> Result<Priority, BadPriority> {
        match text {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(BadPriority(other.to_owned())),
        }
    }

    /// The lowercase name, as accepted by [`Priority::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// The topic pushes of this priority are published to.
    pub fn topic(self) -> &'static str {
        match self {
            Priority::High => TOPIC_HIGH,
            Priority::Normal => TOPIC_NORMAL,
            Priority::Low => TOPIC_LOW,
        }
    }

    /// The priority whose topic is `topic`, `None` for any other topic.
    pub fn from_topic(topic: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.topic() == topic)
    }
}

impl FromStr for Priority {
    type Err = BadPriority;
    fn from_str(text: &str) -> Result<Priority, BadPriority> {
        Priority::parse(text)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority name that is not `high`, `normal` or `low`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPriority(pub String);

impl fmt::Display for BadPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown priority {:?}, expected high, normal or low",
            self.0
        )
    }
}

impl std::error::Error for BadPriority {}

/// Who a push is for. Header text: `user`, `user/device` (split at the first `/`, so a
/// device may contain `/` but a user may not) or `*` for every connection.
///
/// The variants are public for matching; build values with [`Target::parse`] or check
/// hand-built ones with [`Target::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of a user.
    User(String),
    /// One device of a user.
    Device {
        /// The user.
        user: String,
        /// The user's device.
        device: String,
    },
    /// Every connection on every edge.
    Broadcast,
}

/// Why a `herald-target` value is not a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTarget {
    /// The header value is not UTF-8.
    NotUtf8,
    /// The user part is empty.
    EmptyUser,
    /// A `/` is present but nothing follows it.
    EmptyDevice,
    /// A user of `*` would read back as a broadcast.
    ReservedUser,
    /// A user containing `/` would read back as a device target.
    SlashInUser,
    /// The user or device contains a control character.
    ControlChar,
    /// The user or device is longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
}

impl fmt::Display for BadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadTarget::NotUtf8 => "target is not UTF-8",
            BadTarget::EmptyUser => "target has an empty user",
            BadTarget::EmptyDevice => "target has an empty device after '/'",
            BadTarget::ReservedUser => "'*' is not a user (it means broadcast)",
            BadTarget::SlashInUser => "a user cannot contain '/'",
            BadTarget::ControlChar => "target contains a control character",
            BadTarget::TooLong => "target user or device exceeds 1024 bytes",
        })
    }
}

impl std::error::Error for BadTarget {}

fn check_name(name: &str) -> Result<(), BadTarget> {
    if name.len() > MAX_NAME_LEN {
        return Err(BadTarget::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(BadTarget::ControlChar);
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), BadTarget> {
    match user {
        "" => Err(BadTarget::EmptyUser),
        "*" => Err(BadTarget::ReservedUser),
        _ if user.contains('/') => Err(BadTarget::SlashInUser),
        _ => check_name(user),
    }
}

impl Target {
    /// Parses header text: `*`, `user` or `user/device`.
    pub fn parse(text: &str) -> Result<Target, BadTarget> {
        if text == "*" {
            return Ok(Target::Broadcast);
        }
        let target = match text.split_once('/') {
            None => Target::User(text.to_owned()),
            Some((user, device)) => Target::Device {
                user: user.to_owned(),
                device: device.to_owned(),
            },
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks a target built by hand would survive formatting and parsing unchanged.
    pub fn validate(&self) -> Result<(), BadTarget> {
        match self {
            Target::Broadcast => Ok(()),
            Target::User(user) => check_user(user),
            Target::Device { user, device } => {
                check_user(user)?;
                if device.is_empty() {
                    return Err(BadTarget::EmptyDevice);
                }
                check_name(device)
            }
        }
    }

    /// The target user — also the record key a sender must use — `None` for a broadcast.
    pub fn user(&self) -> Option<&str> {
        match self {
            Target::User(user) | Target::Device { user, .. } => Some(user),
            Target::Broadcast => None,
        }
    }

    /// The target device, if the push is for one device.
    pub fn device(&self) -> Option<&str> {
        match self {
            Target::Device { device, .. } => Some(device),
            _ => None,
        }
    }
}

impl FromStr for Target {
    type Err = BadTarget;
    fn from_str(text: &str) -> Result<Target, BadTarget> {
        Target::parse(text)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(user) => f.write_str(user),
            Target::Device { user, device } => write!(f, "{user}/{device}"),
            Target::Broadcast => f.write_str("*"),
        }
    }
}

/// Why a record's headers cannot be routed; the record is dead-lettered with
/// [`Malformed::reason`] as its `herald-dead-reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// No `herald-target` header (or only a null-valued one).
    MissingTarget,
    /// `herald-target` is present but not a valid target.
    BadTarget(BadTarget),
    /// `herald-id` is empty, not UTF-8, contains a control character or is too long.
    BadId,
    /// `herald-expires-at` is not a decimal `u64`.
    BadExpiresAt,
    /// `herald-created-at` is not a decimal `u64`.
    BadCreatedAt,
    /// A `herald-*` header this contract defines appears more than once.
    DuplicateHeader(&'static str),
    /// The record key is present and is not the target user.
    KeyTargetMismatch,
}

impl Malformed {
    /// Stable kebab-case reason, the value of the dead letter's `herald-dead-reason` header.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::MissingTarget => "missing-target",
            Malformed::BadTarget(_) => "bad-target",
            Malformed::BadId => "bad-id",
            Malformed::BadExpiresAt => "bad-expires-at",
            Malformed::BadCreatedAt => "bad-created-at",
            Malformed::DuplicateHeader(_) => "duplicate-header",
            Malformed::KeyTargetMismatch => "key-target-mismatch",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::MissingTarget => write!(f, "no {HEADER_TARGET} header"),
            Malformed::BadTarget(why) => write!(f, "bad {HEADER_TARGET}: {why}"),
            Malformed::BadId => write!(
                f,
                "{HEADER_ID} must be 1..={MAX_NAME_LEN} bytes of UTF-8 without control characters"
            ),
            Malformed::BadExpiresAt => {
                write!(f, "{HEADER_EXPIRES_AT} must be decimal unix milliseconds")
            }
            Malformed::BadCreatedAt => {
                write!(f, "{HEADER_CREATED_AT} must be decimal unix microseconds")
            }
            Malformed::DuplicateHeader(name) => write!(f, "header {name} appears more than once"),
            Malformed::KeyTargetMismatch => {
                write!(f, "record key differs from the user in {HEADER_TARGET}")
            }
        }
    }
}

impl std::error::Error for Malformed {}

/// The routing information of one push record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushHeaders {
    /// `herald-id`; when absent the processor derives one (e.g. from topic/partition/offset).
    pub id: Option<String>,
    /// `herald-target`: who gets the push.
    pub target: Target,
    /// `herald-expires-at` (unix ms); `None` = no sender-imposed expiry.
    pub expires_at_ms: Option<u64>,
    /// `herald-created-at` (unix µs), for end-to-end latency accounting.
    pub created_at_us: Option<u64>,
}

/// A decimal `u64`: ASCII digits only, no sign, no spaces.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn push_id(value: &[u8]) -> Result<String, Malformed> {
    let id = std::str::from_utf8(value).map_err(|_| Malformed::BadId)?;
    if id.is_empty() || id.len() > MAX_NAME_LEN || id.chars().any(char::is_control) {
        return Err(Malformed::BadId);
    }
    Ok(id.to_owned())
}

/// Stores a header value, refusing a second occurrence.
fn once<'a>(
    slot: &mut Option<&'a [u8]>,
    name: &'static str,
    value: &'a [u8],
) -> Result<(), Malformed> {
    if slot.replace(value).is_some() {
        return Err(Malformed::DuplicateHeader(name));
    }
    Ok(())
}

impl PushHeaders {
    /// Parses a record's headers (name, value; `None` = a Kafka null value, treated as if the
    /// header were absent) and checks them against the record `key`. Header names are
    /// matched exactly (lowercase); headers outside this contract are ignored, so senders
    /// may add their own (tracing, …).
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        key: Option<&[u8]>,
    ) -> Result<PushHeaders, Malformed> {
        let (mut id, mut target, mut expires, mut created) = (None, None, None, None);
        for (name, value) in headers {
            let Some(value) = value else { continue };
            match name {
                HEADER_ID => once(&mut id, HEADER_ID, value)?,
                HEADER_TARGET => once(&mut target, HEADER_TARGET, value)?,
                HEADER_EXPIRES_AT => once(&mut expires, HEADER_EXPIRES_AT, value)?,
                HEADER_CREATED_AT => once(&mut created, HEADER_CREATED_AT, value)?,
                _ => {}
            }
        }
        let target = target.ok_or(Malformed::MissingTarget)?;
        let target = std::str::from_utf8(target)
            .map_err(|_| BadTarget::NotUtf8)
            .and_then(Target::parse)
            .map_err(Malformed::BadTarget)?;
        if let (Some(key), Some(user)) = (key, target.user()) {
            if key != user.as_bytes() {
                return Err(Malformed::KeyTargetMismatch);
            }
        }
        Ok(PushHeaders {
            id: id.map(push_id).transpose()?,
            target,
            expires_at_ms: expires
                .map(|v| decimal(v).ok_or(Malformed::BadExpiresAt))
                .transpose()?,
            created_at_us: created
                .map(|v| decimal(v).ok_or(Malformed::BadCreatedAt))
                .transpose()?,
        })
    }

    /// The headers a sender attaches, in contract order; [`PushHeaders::parse`] reads them
    /// back unchanged (for a valid target and id).
    pub fn to_header_pairs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut pairs = Vec::with_capacity(4);
        if let Some(id) = &self.id {
            pairs.push((HEADER_ID, id.as_bytes().to_vec()));
        }
        pairs.push((HEADER_TARGET, self.target.to_string().into_bytes()));
        if let Some(ms) = self.expires_at_ms {
            pairs.push((HEADER_EXPIRES_AT, ms.to_string().into_bytes()));
        }
        if let Some(us) = self.created_at_us {
            pairs.push((HEADER_CREATED_AT, us.to_string().into_bytes()));
        }
        pairs
    }

    /// The record key a sender must use: the target user (`None` for a broadcast).
    pub fn key(&self) -> Option<&str> {
        self.target.user()
    }

    /// Whether the push must no longer be delivered at `now_ms` (same rule as the delivery
    /// port: the expiry instant itself is too late).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|at| crate::delivery::is_expired(at, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(headers: &[(&str, &[u8])], key: Option<&[u8]>) -> Result<PushHeaders, Malformed> {
        PushHeaders::parse(headers.iter().map(|(n, v)| (*n, Some(*v))), key)
    }

    #[test]
    fn priorities_parse_order_and_map_to_topics() {
        assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Ok(p));
            assert_eq!(Priority::from_topic(p.topic()), Some(p));
        }
        assert_eq!(Priority::High.topic(), "herald.push.high");
        assert_eq!(Priority::Low.topic(), "herald.push.low");
        assert_eq!(Priority::from_topic(TOPIC_DEAD), None);
        assert_eq!(
            "urgent".parse::<Priority>(),
            Err(BadPriority("urgent".into()))
        );
        assert!(Priority::parse("High").is_err(), "names are lowercase");
    }

    #[test]
    fn targets_parse_and_format() {
        assert_eq!(Target::parse("*"), Ok(Target::Broadcast));
        assert_eq!(Target::parse("alice"), Ok(Target::User("alice".into())));
        assert_eq!(
            Target::parse("alice/phone/2"),
            Ok(Target::Device {
                user: "alice".into(),
                device: "phone/2".into()
            })
        );
        for text in ["*", "alice", "alice/phone/2", "ünï/cödé", "a b/c d"] {
            assert_eq!(Target::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_targets_are_named() {
        assert_eq!(Target::parse(""), Err(BadTarget::EmptyUser));
        assert_eq!(Target::parse("/phone"), Err(BadTarget::EmptyUser));
        assert_eq!(Target::parse("alice/"), Err(BadTarget::EmptyDevice));
        assert_eq!(Target::parse("*/phone"), Err(BadTarget::ReservedUser));
        assert_eq!(Target::parse("al\nice"), Err(BadTarget::ControlChar));
        assert_eq!(Target::parse("alice/ph\u{7f}"), Err(BadTarget::ControlChar));
        assert_eq!(
            Target::parse(&"u".repeat(MAX_NAME_LEN + 1)),
            Err(BadTarget::TooLong)
        );
        assert!(Target::parse(&"u".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            Target::User("a/b".into()).validate(),
            Err(BadTarget::SlashInUser)
        );
        assert_eq!(
            Target::User("*".into()).validate(),
            Err(BadTarget::ReservedUser)
        );
    }

    #[test]
    fn headers_round_trip() {
        let headers = PushHeaders {
            id: Some("push-1".into()),
            target: Target::parse("alice/phone").unwrap(),
            expires_at_ms: Some(1_700_000_000_000),
            created_at_us: Some(1_699_999_999_000_000),
        };
        let pairs = headers.to_header_pairs();
        assert_eq!(
            pairs.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [
                HEADER_ID,
                HEADER_TARGET,
                HEADER_EXPIRES_AT,
                HEADER_CREATED_AT
            ]
        );
        let parsed = PushHeaders::parse(
            pairs.iter().map(|(n, v)| (*n, Some(v.as_slice()))),
            headers.key().map(str::as_bytes),
        );
        assert_eq!(parsed, Ok(headers));
    }

    #[test]
    fn minimal_headers_and_ignored_extras() {
        let parsed = parse(
            &[("traceparent", b"00-abc"), ("herald-target", b"*")],
            Some(b"whatever"),
        )
        .unwrap();
        assert_eq!(
            parsed,
            PushHeaders {
                id: None,
                target: Target::Broadcast,
                expires_at_ms: None,
                created_at_us: None
            }
        );
        assert_eq!(parsed.key(), None);
    }

    #[test]
    fn each_defect_has_its_reason() {
        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(Headers, Option<&[u8]>, &str)] = &[
            (&[], None, "missing-target"),
            (&[("Herald-Target", b"alice")], None, "missing-target"),
            (&[("herald-target", b"")], None, "bad-target"),
            (&[("herald-target", b"\xff")], None, "bad-target"),
            (
                &[("herald-target", b"a"), ("herald-id", b"")],
                None,
                "bad-id",
            ),
            (
                &[("herald-target", b"a"), ("herald-id", b"x\ny")],
                None,
                "bad-id",
            ),
            (
                &[("herald-target", b"a"), ("herald-expires-at", b"-1")],
                None,
                "bad-expires-at",
            ),
            (
                &[("herald-target", b"a"), ("herald-expires-at", b" 1")],
                None,
                "bad-expires-at",
            ),
            (
                &[
                    ("herald-target", b"a"),
                    ("herald-expires-at", b"18446744073709551616"),
                ],
                None,
                "bad-expires-at",
            ),
            (
                &[("herald-target", b"a"), ("herald-created-at", b"1.5")],
                None,
                "bad-created-at",
            ),
            (
                &[("herald-target", b"a"), ("herald-target", b"a")],
                None,
                "duplicate-header",
            ),
            (
                &[("herald-target", b"alice")],
                Some(b"bob"),
                "key-target-mismatch",
            ),
            (
                &[("herald-target", b"alice/phone")],
                Some(b"alice/phone"),
                "key-target-mismatch",
            ),
        ];
        for (headers, key, reason) in cases {
            let err = parse(headers, *key).expect_err(reason);
            assert_eq!(err.reason(), *reason, "{headers:?}: {err}");
        }
    }

    #[test]
    fn null_values_count_as_absent() {
        let headers = [
            ("herald-target", None),
            ("herald-target", Some(&b"alice"[..])),
            ("herald-expires-at", None),
        ];
        let parsed = PushHeaders::parse(headers, Some(b"alice")).unwrap();
        assert_eq!(parsed.target, Target::User("alice".into()));
        assert_eq!(parsed.expires_at_ms, None);
        assert_eq!(
            PushHeaders::parse([("herald-target", None)], None),
            Err(Malformed::MissingTarget)
        );
    }

    #[test]
    fn expiry_uses_the_delivery_rule() {
        let mut h = parse(&[("herald-target", b"a")], None).unwrap();
        assert!(!h.is_expired(u64::MAX));
        h.expires_at_ms = Some(10);
        assert!(!h.is_expired(9));
        assert!(h.is_expired(10));
    }
}
