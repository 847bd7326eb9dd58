//! Property tests of the handshake (proptest, a fixed case budget): arbitrary bytes and
//! mutated valid request heads never panic [`decide`], every decision is one the module
//! defines, nothing is buffered or allocated beyond the head cap, a head fed in pieces is
//! decided as when whole, and no connection authenticated by a cookie is accepted from an
//! `Origin` that is not on the allow-list.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;
use crate::auth::AuthError;

/// Head cap used throughout (the default `max_head_bytes`).
const CAP: usize = 8192;

/// Every status [`decide`] may refuse with.
const REJECT_STATUSES: [u16; 6] = [400, 401, 403, 404, 405, 431];

/// Device id given to connections authenticated by cookie, to recognise them.
const VIA_COOKIE: &str = "via-cookie";

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Accepts `Bearer user:device`, `?access_token=user:device` and the cookie
/// `herald_token=user` (read as the built-in methods do, through `cookie_credential`).
struct FakeAuth;

impl Authenticator for FakeAuth {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        if let Some(t) = req.bearer().or_else(|| req.query_param("access_token")) {
            let (u, d) = t.split_once(':').ok_or(AuthError::Malformed)?;
            return Ok(Identity {
                user: u.into(),
                device: (!d.is_empty()).then(|| d.into()),
            });
        }
        match req.cookie_credential("herald_token")? {
            Some(user) if !user.is_empty() => Ok(Identity {
                user: user.into(),
                device: Some(VIA_COOKIE.into()),
            }),
            Some(_) => Err(AuthError::Malformed),
            None => Err(AuthError::MissingCredentials),
        }
    }
}

/// Counts the bytes this thread has live on the heap, so a test can see the peak a call
/// reached. Forwards everything to the system allocator.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    /// The counting allocator of this test binary.
    #[derive(Debug)]
    pub(super) struct Counting;

    // Test-only, and the one place the crate needs `unsafe`: a global allocator is an
    // `unsafe impl` by definition. Every method forwards its arguments unchanged.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            // SAFETY: `ptr` came from `System` through this allocator with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size as isize - layout.size() as isize);
            // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Runs `f` and returns its result with the most heap bytes it held at once on this
    /// thread (what it allocated and had not freed, its result included).
    pub(super) fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        let out = f();
        (out, PEAK.with(Cell::get).max(0) as usize)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

fn run(buf: &[u8], origins: &[String]) -> Decision {
    decide(
        buf,
        &Policy {
            max_head_bytes: CAP,
            allowed_origins: origins,
        },
        &FakeAuth,
        0,
    )
}

/// Checks what every decision on `buf` must satisfy; returns the decision.
fn check(buf: &[u8], origins: &[String]) -> Result<Decision, TestCaseError> {
    let (d, peak) = counting::peak_during(|| run(buf, origins));
    // Heap use is bounded by the part of the buffer under the cap, never by the buffer:
    // the cookie join, the CORS origin and the identity are each at most one head.
    let bound = 3 * buf.len().min(CAP) + 2048;
    prop_assert!(peak <= bound, "peak heap {} > {} for {:?}", peak, bound, d);
    match &d {
        // Waiting for more is only allowed under the cap: a caller buffers at most one cap
        // (plus the read that crossed it) before a decision.
        Decision::NeedMore => prop_assert!(buf.len() < CAP),
        Decision::Reject(r) => {
            prop_assert!(REJECT_STATUSES.contains(&r.status), "{:?}", r);
            prop_assert!(!r.reason.is_empty());
            prop_assert_eq!(
                r.auth_failure,
                matches!(r.status, 401) || r.reason == "cookie_origin"
            );
        }
        Decision::Health => {}
        Decision::Accept(a) => {
            prop_assert!(a.head_len <= buf.len() && a.head_len <= CAP);
            prop_assert_eq!(a.ws_accept.is_some(), a.kind == ConnKind::WebSocket);
            if a.kind == ConnKind::Sse {
                prop_assert_eq!(a.subprotocol, None);
            }
            if a.identity.device.as_deref() == Some(VIA_COOKIE) {
                check_cookie_origin(&buf[..a.head_len], origins)?;
            }
        }
    }
    Ok(d)
}

/// A connection authenticated by cookie has no `Origin`, or one on a non-empty allow-list.
fn check_cookie_origin(head: &[u8], origins: &[String]) -> Result<(), TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    prop_assert!(req.parse(head).is_ok());
    let sent: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| h.value)
        .collect();
    match sent[..] {
        [] => {}
        [one] => {
            let one = String::from_utf8_lossy(one)
                .trim()
                .trim_end_matches('/')
                .to_ascii_lowercase();
            prop_assert!(
                origins.contains(&one),
                "cookie from {:?}, allowed {:?}",
                one,
                origins
            );
        }
        _ => prop_assert!(sent.is_empty(), "cookie with {} Origin headers", sent.len()),
    }
    Ok(())
}

/// Request heads the parser is meant to see, to mutate.
fn valid_head() -> impl Strategy<Value = String> {
    let ws = "GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1\r\n";
    let base = prop::sample::select(vec![
        ws.to_string(),
        "GET /sse?access_token=bob:tab HTTP/1.1\r\nHost: e\r\n".to_string(),
        "GET /sse HTTP/1.1\r\nHost: e\r\n".to_string(),
        "GET /healthz HTTP/1.1\r\n".to_string(),
    ]);
    let extra = vec(
        prop::sample::select(vec![
            "Authorization: Bearer alice:phone",
            "Authorization: Bearer alice:",
            "Cookie: herald_token=carol",
            "Cookie: a=b; herald_token=dave",
            "Origin: https://app.example.com",
            "Origin: HTTPS://APP.EXAMPLE.COM/",
            "Origin: https://evil.example",
            "Origin: null",
            "origin:https://app.example.com",
            "Upgrade: websocket",
        ]),
        0..4,
    );
    (base, extra).prop_map(|(base, extra)| {
        let mut head = base;
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    })
}

fn allow_list() -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(vec![
        vec![],
        vec!["https://app.example.com".to_string()],
        vec![
            "https://other.example".to_string(),
            "https://app.example.com".to_string(),
        ],
    ])
}

/// One edit of a head.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    /// Repeats the line around this offset.
    DuplicateLine(usize),
    /// Inserts this many bytes of filler into the line around this offset.
    Grow(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), 1..2 * CAP).prop_map(|(i, n)| Mutation::Grow(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
    match *m {
        Mutation::Flip(i, x) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] ^= x;
        }
        Mutation::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
        Mutation::Remove(i) if !bytes.is_empty() => {
            bytes.remove(at(i, bytes.len()));
        }
        Mutation::Truncate(n) => bytes.truncate(at(n, bytes.len() + 1)),
        Mutation::DuplicateLine(i) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            let start = bytes[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(end..end, line);
        }
        Mutation::Grow(i, n) => {
            let i = at(i, bytes.len() + 1);
            bytes.splice(i..i, std::iter::repeat_n(b'x', n));
        }
        _ => {}
    }
}

/// The first decision when `buf` arrives in pieces cut at `cuts`, as a shard feeds it.
fn decide_in_pieces(buf: &[u8], cuts: &[usize], origins: &[String]) -> Decision {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (buf.len() + 1)).collect();
    bounds.extend([0, buf.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut last = Decision::NeedMore;
    for &end in &bounds[1..] {
        last = run(&buf[..end], origins);
        if last != Decision::NeedMore {
            break;
        }
    }
    last
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_decide_within_the_defined_statuses(
        bytes in vec(any::<u8>(), 0..3 * CAP),
        origins in allow_list(),
    ) {
        check(&bytes, &origins)?;
    }

    #[test]
    fn arbitrary_text_after_a_request_line_decides_within_the_defined_statuses(
        line in prop::sample::select(vec!["GET /ws HTTP/1.1\r\n", "GET /sse HTTP/1.1\r\n", "GET /healthz HTTP/1.1\r\n"]),
        rest in "[ -~\r\n\t]{0,600}",
        origins in allow_list(),
    ) {
        check(format!("{line}{rest}\r\n\r\n").as_bytes(), &origins)?;
    }

    #[test]
    fn mutated_heads_decide_within_the_defined_statuses(
        head in valid_head(),
        edits in vec(mutation(), 0..4),
        origins in allow_list(),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = head.into_bytes();
        for m in &edits {
            mutate(&mut bytes, m);
        }
        let whole = check(&bytes, &origins)?;
        // (Over the cap the answer may be 431 in pieces where the whole buffer shows a
        // malformed byte beyond the cap first: a refusal either way.)
        if whole != Decision::NeedMore && bytes.len() <= CAP {
            prop_assert_eq!(decide_in_pieces(&bytes, &cuts, &origins), whole);
        }
    }

    #[test]
    fn cookies_are_used_only_from_an_allowed_or_absent_origin(
        head in valid_head(),
        origins in allow_list(),
    ) {
        let d = check(head.as_bytes(), &origins)?;
        let has_origin = head.to_ascii_lowercase().contains("\r\norigin:");
        let has_token = head.contains("Bearer alice:") || head.contains("access_token=");
        let has_cookie = head.contains("herald_token=");
        if has_origin && origins.is_empty() && has_cookie && !has_token && !head.starts_with("GET /healthz") {
            let refused = matches!(d, Decision::Reject(Reject { status: 403 | 400, .. }));
            prop_assert!(refused, "{:?}", d);
        }
    }
}
