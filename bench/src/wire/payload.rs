//! The benchmark payload: `hb1 <seq> <sent_us> ` then padding. It is plain ASCII so it
//! travels as a WebSocket text frame and as one SSE `data:` line through every system.
//!
//! `seq` numbers messages per target (push) or per broadcast (fan-out), so clients can count
//! losses and duplicates; `sent_us` is when the message was *scheduled* to be sent (unix µs),
//! so a sender that falls behind shows up as latency instead of hiding it (coordinated
//! omission).

/// Payload prefix and format version.
pub const MAGIC: &str = "hb1";

/// Appends a payload of at least `size` bytes to `out`.
pub fn encode(seq: u64, sent_us: u64, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(format!("{MAGIC} {seq} {sent_us} ").as_bytes());
    while out.len() - start < size {
        out.push(b'x');
    }
}

/// The payload as a new vector.
pub fn make(seq: u64, sent_us: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(32));
    encode(seq, sent_us, size, &mut v);
    v
}

/// `(seq, sent_us)` of a benchmark payload; `None` for anything else.
pub fn parse(payload: &[u8]) -> Option<(u64, u64)> {
    let head = &payload[..payload.len().min(64)];
    let text = std::str::from_utf8(head)
        .ok()
        .or_else(|| std::str::from_utf8(&head[..head.len().saturating_sub(3)]).ok())?;
    let mut words = text.split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let seq = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let p = make(42, 1_700_000_000_123_456, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse(&p), Some((42, 1_700_000_000_123_456)));
        let short = make(1, 2, 0);
        assert_eq!(parse(&short), Some((1, 2)));
    }

    #[test]
    fn foreign_payloads() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(b"hb1 x 2 "), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[0xff, 0xfe]), None);
    }
}
