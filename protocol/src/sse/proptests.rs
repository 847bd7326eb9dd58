//! Property tests of the SSE encoding (proptest, a fixed case budget): any UTF-8 payload,
//! `id` and `event` round-trip through [`SseParser`] whole or split at any points, every line
//! the encoder writes is one of its own fields (a payload cannot start a field or an event),
//! and what it cannot carry is refused with nothing written.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text rich in what matters to an event stream: line terminators, colons, spaces, a BOM and
/// NUL, among any other Unicode scalars.
fn tricky(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            4 => any::<char>(),
            2 => prop::sample::select(vec!['\r', '\n', ':', ' ', '\u{feff}', '\0']),
        ],
        0..max,
    )
    .prop_map(|c| c.into_iter().collect())
}

/// Payloads that also contain whole field lines after line terminators.
fn payload() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            tricky(12),
            prop::sample::select(vec![
                "\r\n",
                "\n\n",
                "\r\r",
                "\ndata: injected\n\n",
                "\rid: 666\r",
                "\nevent: x\n",
                "\nretry: 1\n",
                "\n: comment\n",
                "\n\u{feff}data: y",
            ])
            .prop_map(String::from),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

/// `id` / `event` values the encoder accepts: no CR, LF or NUL.
fn field_value() -> impl Strategy<Value = String> {
    tricky(12).prop_map(|s| s.replace(['\r', '\n', '\0'], ""))
}

/// The payload as a parser reports it: every CRLF, CR and LF becomes LF.
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Splits a stream into lines the way an event-stream parser does (CRLF, CR or LF); written
/// apart from the encoder's own splitter so the two check each other.
fn lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < stream.len() {
        match stream[i] {
            b'\n' => {
                out.push(&stream[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&stream[start..i]);
                if stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&stream[start..]);
    out
}

/// Parses `stream` fed in pieces cut at `cuts`.
fn parse_split(stream: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.extend([0, stream.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for w in bounds.windows(2) {
        parser.feed(&stream[w[0]..w[1]]);
        events.extend(std::iter::from_fn(|| parser.next_event()));
    }
    events
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_utf8_event_round_trips_through_the_parser(
        data in payload(),
        id in proptest::option::of(field_value()),
        event in proptest::option::of(field_value()),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut out = Vec::new();
        encode_event(&mut out, id.as_deref(), event.as_deref(), data.as_bytes()).unwrap();
        let expected = SseEvent {
            id: id.filter(|i| !i.is_empty()),
            event: event.filter(|e| !e.is_empty()),
            data: normalised(&data),
            retry: None,
        };
        prop_assert_eq!(parse_split(&out, &[]), vec![expected.clone()]);
        prop_assert_eq!(parse_split(&out, &cuts), vec![expected]);
    }

    #[test]
    fn no_output_line_is_anything_but_the_encoders_own_fields(
        data in payload(),
        id in proptest::option::of(field_value()),
        event in proptest::option::of(field_value()),
    ) {
        let mut out = Vec::new();
        encode_event(&mut out, id.as_deref(), event.as_deref(), data.as_bytes()).unwrap();
        prop_assert!(out.ends_with(b"\n\n"));
        let lines = lines(&out[..out.len() - 1]); // drop the blank line's terminator
        let (blank, fields) = lines.split_last().unwrap();
        prop_assert!(blank.is_empty(), "the event ends with exactly one blank line");
        let mut fields = fields.iter();
        if let Some(id) = &id {
            let want = format!("id: {id}");
            prop_assert_eq!(fields.next().copied(), Some(want.as_bytes()));
        }
        if let Some(event) = &event {
            let want = format!("event: {event}");
            prop_assert_eq!(fields.next().copied(), Some(want.as_bytes()));
        }
        let data_lines: Vec<&[u8]> = fields.copied().collect();
        // One `data: ` line per payload line, each exactly that line: no payload byte ended a
        // line early, started another field or dispatched an event.
        let expected = normalised(&data);
        let payload_lines: Vec<&str> = expected.split('\n').collect();
        prop_assert_eq!(data_lines.len(), payload_lines.len());
        for (line, want) in data_lines.iter().zip(payload_lines) {
            let want = format!("data: {want}");
            prop_assert_eq!(*line, want.as_bytes());
        }
    }

    #[test]
    fn a_stream_of_events_round_trips_with_the_last_event_id(
        events in vec(
            (payload(), proptest::option::of(field_value()), proptest::option::of(field_value())),
            0..5,
        ),
        cuts in vec(any::<usize>(), 0..8),
        keepalive in field_value(),
    ) {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();
        for (data, id, event) in &events {
            encode_comment(&mut out, &keepalive);
            encode_event(&mut out, id.as_deref(), event.as_deref(), data.as_bytes()).unwrap();
            if let Some(id) = id {
                last_id.clone_from(id);
            }
            expected.push(SseEvent {
                id: (!last_id.is_empty()).then(|| last_id.clone()),
                event: event.clone().filter(|e| !e.is_empty()),
                data: normalised(data),
                retry: None,
            });
        }
        prop_assert_eq!(parse_split(&out, &cuts), expected);
    }

    #[test]
    fn comments_never_dispatch_or_set_anything(text in payload()) {
        let mut out = Vec::new();
        encode_comment(&mut out, &text);
        for line in lines(&out[..out.len() - 1]) {
            prop_assert!(line.starts_with(b":"));
        }
        let mut parser = SseParser::new();
        parser.feed(&out);
        prop_assert_eq!(parser.next_event(), None);
        prop_assert_eq!(parser.last_event_id(), "");
        prop_assert_eq!(parser.reconnection_time(), None);
    }

    #[test]
    fn what_cannot_be_carried_is_refused_and_writes_nothing(
        data in vec(any::<u8>(), 0..64),
        bad in field_value().prop_flat_map(|v| {
            let n = v.len();
            (Just(v), 0..=n, prop::sample::select(vec!['\r', '\n', '\0']))
        }),
    ) {
        let (value, at, c) = bad;
        let mut cut = value.clone();
        let at = (0..=at).rev().find(|&i| cut.is_char_boundary(i)).unwrap_or(0);
        cut.insert(at, c);
        let mut out = b"before".to_vec();
        prop_assert_eq!(encode_event(&mut out, Some(&cut), None, b"x"), Err(SseError::BadField));
        prop_assert_eq!(encode_event(&mut out, None, Some(&cut), b"x"), Err(SseError::BadField));
        prop_assert_eq!(&out[..], b"before");
        let utf8 = std::str::from_utf8(&data).is_ok();
        prop_assert_eq!(encode_event(&mut out, None, None, &data).is_ok(), utf8);
        if !utf8 {
            prop_assert_eq!(&out[..], b"before");
        }
    }
}
