//! Property tests of the delivery-frame codec (proptest, a fixed case budget): arbitrary and
//! mutated bytes never panic the decoder, what it accepts is exactly the canonical encoding of
//! what it returns, and every encodable frame round-trips whole or split at any points, with
//! the reader never holding more than one capped frame.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;

/// Frame cap used throughout: small, so the strategies also produce frames above it.
const MAX_FRAME: usize = 1024;

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode scalar, multi-byte ones included.
    vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect())
}

fn expiry() -> impl Strategy<Value = u64> {
    prop_oneof![Just(NEVER_EXPIRES), any::<u64>()]
}

fn deliver_msg() -> impl Strategy<Value = DeliverMsg> {
    (
        any::<u64>(),
        text(),
        proptest::option::of(text()),
        text(),
        expiry(),
        vec(any::<u8>(), 0..64),
        proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
    )
        .prop_map(
            |(seq, user, device, message_id, expires_at_ms, payload, position)| DeliverMsg {
                seq,
                user,
                device,
                message_id,
                expires_at_ms,
                payload,
                position: position.map(|(epoch, ms, seq)| crate::history::Position {
                    epoch,
                    id: crate::history::EntryId { ms, seq },
                }),
            },
        )
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        any::<u64>(),
        prop::sample::select(Outcome::ALL.to_vec()),
        any::<u32>(),
    )
        .prop_map(|(seq, outcome, delivered)| Answer {
            seq,
            outcome,
            delivered,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u8>(), any::<[u8; NONCE_LEN]>())
            .prop_map(|(version, nonce)| Frame::Challenge { version, nonce }),
        (any::<[u8; NONCE_LEN]>(), any::<[u8; MAC_LEN]>())
            .prop_map(|(client_nonce, mac)| Frame::Auth { client_nonce, mac }),
        any::<[u8; MAC_LEN]>().prop_map(|mac| Frame::AuthOk { mac }),
        vec(deliver_msg(), 0..6).prop_map(Frame::Deliver),
        (any::<u64>(), text(), expiry(), vec(any::<u8>(), 0..64)).prop_map(
            |(seq, message_id, expires_at_ms, payload)| Frame::Broadcast(BroadcastMsg {
                seq,
                message_id,
                expires_at_ms,
                payload,
            })
        ),
        vec(answer(), 0..12).prop_map(Frame::Answers),
    ]
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out).expect("strategies stay within the encoder's limits");
    out
}

/// One edit of a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
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
        _ => {}
    }
}

/// Decodes `bytes` and checks the decoder's contract on whatever it says.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes, MAX_FRAME) {
        Ok(Some((frame, used))) => {
            prop_assert!(used <= bytes.len());
            prop_assert!(used <= 4 + MAX_FRAME);
            // Strict decoding: the bytes consumed are the canonical encoding of the frame.
            prop_assert_eq!(&encoded(&frame)[..], &bytes[..used]);
        }
        Ok(None) => {
            // Waiting for more is only right while the declared frame is not all in.
            if let [a, b, c, d, ..] = *bytes {
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                prop_assert!(bytes.len() < 4 + len);
            }
        }
        Err(_) => {}
    }
    Ok(())
}

/// Feeds `bytes` to a reader cut at `cuts`; returns the frames, the first error and the most
/// bytes the reader held between feeds.
fn read(bytes: &[u8], cuts: &[usize]) -> (Vec<Frame>, Option<DecodeError>, usize) {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.extend([0, bytes.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut reader = FrameReader::new(MAX_FRAME);
    let (mut frames, mut held) = (Vec::new(), 0);
    for w in bounds.windows(2) {
        reader.feed(&bytes[w[0]..w[1]]);
        held = held.max(reader.buffered());
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), held),
            }
        }
    }
    (frames, None, held)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..2048)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn mutated_frames_never_panic_and_decode_only_canonically(
        f in frame(),
        edits in vec(mutation(), 1..4),
    ) {
        let mut bytes = encoded(&f);
        for m in &edits {
            mutate(&mut bytes, m);
        }
        check_decode(&bytes)?;
    }

    #[test]
    fn encode_then_decode_is_the_identity(f in frame()) {
        let bytes = encoded(&f);
        prop_assert_eq!(bytes.len(), 4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize);
        prop_assert_eq!(decode(&bytes, usize::MAX), Ok(Some((f.clone(), bytes.len()))));
        // Every proper prefix asks for more (when under the cap) instead of guessing.
        for n in 0..bytes.len() {
            let prefix = decode(&bytes[..n], usize::MAX);
            prop_assert_eq!(prefix, Ok(None), "prefix {} of {}", n, bytes.len());
        }
    }

    #[test]
    fn a_split_stream_yields_the_same_frames_within_one_capped_frame(
        frames in vec(frame(), 0..6),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(encoded(f));
        }
        let whole = read(&stream, &[]);
        let (got, err, held) = read(&stream, &cuts);
        prop_assert_eq!((&got, &err), (&whole.0, &whole.1));
        // Frames above the cap are refused; all frames before the first such one arrive.
        let fit = frames
            .iter()
            .take_while(|f| encoded(f).len() - 4 <= MAX_FRAME)
            .count();
        prop_assert_eq!(&got[..], &frames[..fit]);
        prop_assert_eq!(err.is_some(), fit < frames.len());
        // Never more than one whole capped frame plus the largest chunk fed at once.
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        bounds.extend([0, stream.len()]);
        bounds.sort_unstable();
        let chunk = bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        prop_assert!(held <= 4 + MAX_FRAME + chunk, "held {} chunk {}", held, chunk);
    }

    #[test]
    fn arbitrary_bytes_split_anywhere_give_the_same_result(
        bytes in vec(any::<u8>(), 0..1024),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let (whole_frames, whole_err, _) = read(&bytes, &[]);
        let (frames, err, _) = read(&bytes, &cuts);
        prop_assert_eq!(frames, whole_frames);
        prop_assert_eq!(err.is_some(), whole_err.is_some());
    }
}
