//! The SSE encoder against the WHATWG parser: random payloads full of line terminators,
//! field names and colons always come back as exactly one event carrying exactly the
//! payload ("payload bytes never forge a field"), and a stream parses the same whatever
//! sizes it arrives in.

use herald_protocol::sse::{encode_comment, encode_event, encode_retry, SseEvent, SseParser};

/// Tiny deterministic PRNG (xorshift64*), so the test needs no dependency and failures
/// reproduce from the printed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that are dangerous inside an event stream, plus ordinary text.
const PIECES: &[&str] = &[
    "\n", "\r", "\r\n", "\n\n", "\r\r", " ", "  ", ":", ": ", "data:", "data: ", "id:", "id: 1",
    "event:", "event: x", "retry:", "retry: 1", "\u{FEFF}", "\0", "é", "日本", "🙂", "\u{2028}",
    "\t", "plain", "x",
];

fn random_payload(rng: &mut XorShift) -> String {
    let pieces = rng.below(12);
    (0..pieces)
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

/// A random field value without CR, LF or NUL (what `id` and `event` may hold).
fn random_field(rng: &mut XorShift) -> Option<String> {
    if rng.below(3) == 0 {
        return None;
    }
    let text: String = (0..rng.below(5))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect();
    Some(text.replace(['\r', '\n', '\0'], "_"))
}

fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn parse_all(stream: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    parser.feed(stream);
    std::iter::from_fn(|| parser.next_event()).collect()
}

#[test]
fn payload_bytes_never_forge_a_field() {
    for seed in 1..=5000u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let payload = random_payload(&mut rng);
        let id = random_field(&mut rng);
        let event = random_field(&mut rng);
        let mut stream = Vec::new();
        encode_event(
            &mut stream,
            id.as_deref(),
            event.as_deref(),
            payload.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {e} for {payload:?}"));
        let events = parse_all(&stream);
        let expected = SseEvent {
            // An empty id or event name means "none" to the parser.
            id: id.filter(|v| !v.is_empty()),
            event: event.filter(|v| !v.is_empty()),
            data: normalise(&payload),
            retry: None,
        };
        assert_eq!(
            events,
            [expected],
            "seed {seed}, payload {payload:?}, stream {:?}",
            String::from_utf8_lossy(&stream)
        );
    }
}

#[test]
fn events_stay_separate_in_a_long_stream() {
    let mut rng = XorShift(0xDEAD_BEEF);
    let mut stream = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..500 {
        let payload = random_payload(&mut rng);
        encode_event(&mut stream, Some(&i.to_string()), None, payload.as_bytes()).unwrap();
        if i % 7 == 0 {
            encode_comment(&mut stream, &random_payload(&mut rng));
        }
        payloads.push(normalise(&payload));
    }
    let events = parse_all(&stream);
    let data: Vec<_> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, payloads);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id.as_deref(), Some(i.to_string().as_str()));
    }
}

fn sample_stream() -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    encode_comment(&mut out, "welcome");
    encode_retry(&mut out, 2500);
    encode_event(&mut out, Some("1"), None, b"first\r\nline two").unwrap();
    encode_event(&mut out, None, Some("reconnect"), b"").unwrap();
    encode_comment(&mut out, "");
    encode_event(&mut out, Some("3"), Some("push"), "  é\r\r🙂\n".as_bytes()).unwrap();
    // Hand-written CR-only and CRLF terminators, as other servers send them.
    out.extend_from_slice(b"data: cr\rdata: only\r\r");
    out.extend_from_slice(b"event: crlf\r\ndata: x\r\n\r\n");
    out
}

#[test]
fn fragment_sweep_yields_identical_events() {
    let stream = sample_stream();
    let whole = parse_all(&stream);
    assert_eq!(whole.len(), 5);
    assert_eq!(whole[0].retry, Some(2500));
    assert_eq!(whole[1].event.as_deref(), Some("reconnect"));
    assert_eq!(whole[2].data, "  é\n\n🙂\n");
    assert_eq!(whole[3].data, "cr\nonly");
    assert_eq!(whole[4].event.as_deref(), Some("crlf"));
    for size in [1, 2, 5, 10, 100] {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in stream.chunks(size) {
            parser.feed(chunk);
            events.extend(std::iter::from_fn(|| parser.next_event()));
        }
        assert_eq!(events, whole, "fragment size {size}");
        assert_eq!(parser.buffered(), 0, "fragment size {size}");
    }
}

#[test]
fn non_utf8_payloads_are_refused() {
    let mut rng = XorShift(7);
    let mut refused = 0;
    for _ in 0..1000 {
        let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
        let mut out = Vec::new();
        match encode_event(&mut out, None, None, &bytes) {
            Ok(()) => {
                let text = std::str::from_utf8(&bytes).expect("accepted only if UTF-8");
                assert_eq!(parse_all(&out)[0].data, normalise(text));
            }
            Err(_) => {
                assert!(std::str::from_utf8(&bytes).is_err());
                assert!(out.is_empty());
                refused += 1;
            }
        }
    }
    assert!(refused > 100, "the sample must include invalid UTF-8");
}
