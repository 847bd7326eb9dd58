//! # Server-Sent Events — an encoding payload bytes cannot break out of
//!
//! The edge writes pushes to SSE clients as `text/event-stream` events. A payload is
//! client-controlled text, so the encoder must make sure no payload byte can end the event,
//! start a new field or start a new event: every line terminator the WHATWG parser
//! recognises (CRLF, CR, LF) becomes the boundary between two `data: ` lines, and every data
//! line is written with the single space the parser strips, so a payload's own leading
//! spaces survive. `id` and `event` values cannot be split that way and are refused when they
//! contain CR, LF or NUL. Payloads must be UTF-8 (the stream is decoded as UTF-8; anything
//! else would be mangled into U+FFFD), which is why the edge answers `unencodable` for
//! binary pushes to SSE-only targets.
//!
//! [`SseParser`] is the client side, implementing the WHATWG "interpreting an event stream"
//! rules; tools and tests use it to read what the edge wrote.

use std::fmt;

/// Why an event could not be encoded. Nothing is written to `out` when encoding fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// The payload is not UTF-8; an event stream can only carry text.
    NotUtf8,
    /// The `id` or `event` value contains CR, LF or NUL, which would end or void the field.
    BadField,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::NotUtf8 => f.write_str("SSE payload is not valid UTF-8"),
            SseError::BadField => f.write_str("SSE id or event name contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for SseError {}

/// UTF-8 byte order mark, skipped once at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn is_line_end(byte: &u8) -> bool {
    *byte == b'\r' || *byte == b'\n'
}

/// Index of the first CR or LF in `text`. Scans eight bytes at a time (SWAR): this runs over
/// every payload byte sent to SSE clients.
fn find_line_end(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // Non-zero iff some byte of `x` is zero (exact as a yes/no test).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = text.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        if has_zero(word ^ CRS) | has_zero(word ^ LFS) != 0 {
            break;
        }
        offset += 8;
    }
    text[offset..]
        .iter()
        .position(is_line_end)
        .map(|i| offset + i)
}

/// Splits `text` at every CRLF, CR or LF and calls `line` with each piece, in order. Text
/// with `n` line terminators yields `n + 1` pieces (the last may be empty).
fn for_each_line(mut text: &[u8], mut line: impl FnMut(&[u8])) {
    loop {
        match find_line_end(text) {
            Some(i) => {
                line(&text[..i]);
                let crlf = text[i] == b'\r' && text.get(i + 1) == Some(&b'\n');
                text = &text[i + if crlf { 2 } else { 1 }..];
            }
            None => return line(text),
        }
    }
}

fn check_field(value: &str) -> Result<(), SseError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(SseError::BadField);
    }
    Ok(())
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Appends one event to `out`: optional `id: ` and `event: ` lines, one `data: ` line per
/// line of `data` (split at CRLF, CR and LF), and the blank line that dispatches it. A
/// parser recovers `data` with its line terminators normalised to LF. Empty `data` still
/// yields an event (with empty data). Allocates nothing but the growth of `out`.
pub fn encode_event(
    out: &mut Vec<u8>,
    id: Option<&str>,
    event: Option<&str>,
    data: &[u8],
) -> Result<(), SseError> {
    if std::str::from_utf8(data).is_err() {
        return Err(SseError::NotUtf8);
    }
    if let Some(id) = id {
        check_field(id)?;
    }
    if let Some(event) = event {
        check_field(event)?;
    }
    let fields = id.map_or(0, |v| v.len() + 5) + event.map_or(0, |v| v.len() + 8);
    out.reserve(fields + data.len() + 8 + 1);
    if let Some(id) = id {
        put_field(out, b"id", id.as_bytes());
    }
    if let Some(event) = event {
        put_field(out, b"event", event.as_bytes());
    }
    for_each_line(data, |line| put_field(out, b"data", line));
    out.push(b'\n');
    Ok(())
}

/// Appends a comment (ignored by parsers; used as a heartbeat that keeps proxies from
/// timing the stream out). Each line of `text` becomes its own comment line, so the text
/// can never start a field. Empty text writes a bare `:` line.
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        out.extend_from_slice(b":\n");
        return;
    }
    for_each_line(text.as_bytes(), |line| {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        out.push(b'\n');
    });
}

/// Appends a `retry:` line: the client's reconnection delay in milliseconds. Takes effect
/// when parsed, without dispatching an event.
pub fn encode_retry(out: &mut Vec<u8>, ms: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = ms;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    put_field(out, b"retry", &digits[at..]);
}

/// One dispatched event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The stream's last event ID at dispatch (it persists across events until the server
    /// sets another); `None` while it is empty, as an empty ID means "no ID".
    pub id: Option<String>,
    /// The event type, `None` for the default type (`message`).
    pub event: Option<String>,
    /// The data lines joined with LF.
    pub data: String,
    /// A reconnection delay (ms) the stream set since the previous dispatched event.
    pub retry: Option<u64>,
}

/// Buffers of the event being assembled, per the WHATWG model.
#[derive(Debug, Default)]
struct EventState {
    /// Data lines received so far, each followed by LF.
    data: String,
    /// Value of the last `event` field.
    event_type: String,
    /// Value of the last valid `id` field; survives dispatch.
    last_event_id: String,
    /// `retry` set since the last dispatch, reported with the next event.
    retry_pending: Option<u64>,
    /// Current reconnection time, if the stream ever set one.
    reconnection_time: Option<u64>,
}

impl EventState {
    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits too many for a u64 are not a usable delay; ignore them like any
                // other invalid value.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    self.reconnection_time = Some(ms);
                    self.retry_pending = Some(ms);
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF after the last data line
        let event_type = std::mem::take(&mut self.event_type);
        Some(SseEvent {
            id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
            event: (!event_type.is_empty()).then_some(event_type),
            data,
            retry: self.retry_pending.take(),
        })
    }
}

/// Client-side event-stream parser: feed it bytes as they arrive, then call
/// [`SseParser::next_event`] until it returns `None`.
///
/// Implements the WHATWG rules: one leading BOM is skipped; lines end at CRLF, CR or LF
/// (a CR at the end of one feed and an LF at the start of the next are one terminator);
/// lines starting with `:` are comments; `field: value` loses one leading space of the
/// value; `data` lines are joined with LF; `id` values containing NUL are ignored; `retry`
/// takes only ASCII digits; a blank line dispatches the event unless it has no data; an
/// event not terminated when the stream ends is never dispatched. Bytes are decoded as
/// UTF-8 with replacement. Meant for trusted streams (tools, tests): a line is buffered
/// whole, however long.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Received bytes from `pos` on not yet processed.
    buf: Vec<u8>,
    /// Offset of the first unprocessed byte of `buf`.
    pos: usize,
    /// Whether the start of the stream has been checked for a BOM.
    bom_checked: bool,
    /// The last line ended with CR: an LF right after it belongs to that terminator.
    after_cr: bool,
    /// The event being assembled.
    state: EventState,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Appends bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, `None` if more bytes are needed.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let rest = &self.buf[self.pos..];
            if !self.bom_checked {
                let n = rest.len().min(BOM.len());
                if rest[..n] != BOM[..n] {
                    self.bom_checked = true;
                } else if n == BOM.len() {
                    self.pos += n;
                    self.bom_checked = true;
                    continue;
                } else {
                    return None; // could still become a BOM
                }
            }
            if self.after_cr {
                match rest.first() {
                    None => return None,
                    Some(b'\n') => {
                        self.pos += 1;
                        self.after_cr = false;
                        continue;
                    }
                    Some(_) => self.after_cr = false,
                }
            }
            let end = rest.iter().position(is_line_end)?;
            self.after_cr = rest[end] == b'\r';
            let line = self.pos..self.pos + end;
            self.pos += end + 1;
            if let Some(event) = self.state.process_line(&self.buf[line]) {
                return Some(event);
            }
        }
    }

    /// The stream's last event ID (empty if none): what a reconnecting client sends as
    /// `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.state.last_event_id
    }

    /// The reconnection delay (ms) last set by the stream, if any.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.state.reconnection_time
    }

    /// Bytes received but not yet processed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, event: Option<&str>, data: &[u8]) -> String {
        let mut out = Vec::new();
        encode_event(&mut out, id, event, data).expect("encodable");
        String::from_utf8(out).unwrap()
    }

    fn parse(stream: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        parser.feed(stream);
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    fn data(d: &str) -> SseEvent {
        SseEvent {
            data: d.into(),
            ..SseEvent::default()
        }
    }

    #[test]
    fn word_scan_finds_the_first_terminator_anywhere() {
        for len in 0..40 {
            for at in 0..=len {
                for end in [b'\r', b'\n'] {
                    // Bytes that differ from CR/LF by one bit, to trip a sloppy SWAR test.
                    let mut text: Vec<u8> =
                        (0..len).map(|i| [0x0c, 0x0b, 0x8d, 0x8a][i % 4]).collect();
                    if at < len {
                        text[at] = end;
                        assert_eq!(find_line_end(&text), Some(at), "len {len} at {at}");
                    } else {
                        assert_eq!(find_line_end(&text), None, "len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn encoder_splits_every_line_terminator() {
        assert_eq!(event(None, None, b"a"), "data: a\n\n");
        assert_eq!(event(None, None, b""), "data: \n\n");
        assert_eq!(
            event(None, None, b"a\r\nb\rc\nd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(event(None, None, b"\n"), "data: \ndata: \n\n");
        assert_eq!(event(None, None, b"\r\r\n"), "data: \ndata: \ndata: \n\n");
        assert_eq!(
            event(Some("7"), Some("push"), b" x"),
            "id: 7\nevent: push\ndata:  x\n\n"
        );
    }

    #[test]
    fn encoder_refuses_what_it_cannot_carry_and_writes_nothing() {
        let mut out = b"keep".to_vec();
        assert_eq!(
            encode_event(&mut out, None, None, b"\xff"),
            Err(SseError::NotUtf8)
        );
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                encode_event(&mut out, Some(bad), None, b"x"),
                Err(SseError::BadField)
            );
            assert_eq!(
                encode_event(&mut out, None, Some(bad), b"x"),
                Err(SseError::BadField)
            );
        }
        assert_eq!(out, b"keep");
    }

    #[test]
    fn comments_and_retry() {
        let mut out = Vec::new();
        encode_comment(&mut out, "");
        encode_comment(&mut out, "hb\ndata: forged\r\n");
        encode_retry(&mut out, 0);
        encode_retry(&mut out, u64::MAX);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            ":\n: hb\n: data: forged\n: \nretry: 0\nretry: 18446744073709551615\n"
        );
        out.extend_from_slice(event(None, None, b"x").as_bytes());
        let events = parse(&out);
        assert_eq!(
            events,
            [SseEvent {
                retry: Some(u64::MAX),
                ..data("x")
            }]
        );
    }

    #[test]
    fn parser_follows_the_whatwg_field_rules() {
        let stream = b"\xEF\xBB\xBFdata:no-space\n\
            data:  two spaces\n\
            data\n\
            : comment\n\
            unknown: field\n\
            \n\
            event: ping\n\
            \n\
            id: 1\0\n\
            id: 42\n\
            retry: 12x\n\
            retry:\n\
            data: a\n\n\
            data: b\n\n\
            id\n\
            retry: 99999999999999999999999\n\
            data: c\n\n\
            data: unterminated\n";
        let events = parse(stream);
        assert_eq!(
            events,
            [
                data("no-space\n two spaces\n"),
                SseEvent {
                    id: Some("42".into()),
                    ..data("a")
                },
                SseEvent {
                    id: Some("42".into()),
                    ..data("b")
                },
                data("c"),
            ]
        );
    }

    #[test]
    fn parser_handles_cr_and_crlf_split_across_feeds() {
        let mut parser = SseParser::new();
        parser.feed(b"data: a\r");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\ndata: b\r");
        parser.feed(b"\r");
        assert_eq!(parser.next_event(), Some(data("a\nb")));
        parser.feed(b"\n");
        assert_eq!(parser.next_event(), None, "LF after CR is part of its CRLF");
        parser.feed(b"data: c\r\r");
        assert_eq!(parser.next_event(), Some(data("c")));
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn bom_is_skipped_only_once_and_only_at_the_start() {
        let mut parser = SseParser::new();
        parser.feed(b"\xEF");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\xBB");
        parser.feed(b"\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n");
        assert_eq!(parser.next_event(), Some(data("x")));
        // A BOM later in the stream is part of the field name, so the line is ignored.
        assert_eq!(parser.next_event(), None);
        assert_eq!(
            parse(b"\xEF\xBBdata: z\n\n").len(),
            0,
            "half a BOM is a field name"
        );
    }

    #[test]
    fn invalid_utf8_on_the_wire_becomes_replacement_characters() {
        assert_eq!(parse(b"data: a\xFFb\n\n"), [data("a\u{FFFD}b")]);
    }

    #[test]
    fn reconnection_time_and_last_event_id_persist() {
        let mut parser = SseParser::new();
        parser.feed(b"retry: 3000\nid: 9\ndata: x\n\ndata: y\n\nid\ndata: z\n\n");
        let events: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
        assert_eq!(events[0].retry, Some(3000));
        assert_eq!(events[1].retry, None, "retry is reported once");
        assert_eq!(events[1].id.as_deref(), Some("9"));
        assert_eq!(events[2].id, None, "an empty id resets it");
        assert_eq!(parser.reconnection_time(), Some(3000));
        assert_eq!(parser.last_event_id(), "");
    }
}
