//! Incremental UTF-8 validation of a text message that arrives in fragments (RFC 6455 §8.1:
//! a text message must be valid UTF-8 as a whole, and an endpoint fails the connection as
//! soon as it sees an invalid sequence). Only the incomplete code point at the end of a
//! fragment — at most 3 bytes — is carried to the next one; the checking itself is std's.

use std::str;

/// Validation state of one text message.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Stream {
    /// Leading bytes of a code point split across fragments.
    tail: [u8; 3],
    /// How many of `tail` are in use.
    tail_len: u8,
}

impl Utf8Stream {
    /// Checks the next piece of the message. False once the bytes so far cannot begin valid
    /// UTF-8 (the state is then meaningless).
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> bool {
        let held = usize::from(self.tail_len);
        if held > 0 {
            // Finish the split code point with at most 3 more bytes.
            let take = bytes.len().min(3);
            let mut joined = [0u8; 6];
            joined[..held].copy_from_slice(&self.tail[..held]);
            joined[held..held + take].copy_from_slice(&bytes[..take]);
            let joined = &joined[..held + take];
            match str::from_utf8(joined) {
                Ok(_) => {
                    self.tail_len = 0;
                    bytes = &bytes[take..];
                }
                Err(e) if e.valid_up_to() > 0 => {
                    // The split code point is complete; check the rest from where it ended.
                    self.tail_len = 0;
                    bytes = &bytes[e.valid_up_to() - held..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still a prefix of one code point (so at most 3 bytes in all).
                    self.tail[..joined.len()].copy_from_slice(joined);
                    self.tail_len = joined.len() as u8;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.tail[..rest.len()].copy_from_slice(rest);
                self.tail_len = rest.len() as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the message may end here (no code point left unfinished).
    pub(crate) fn is_complete(&self) -> bool {
        self.tail_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_in_pieces(bytes: &[u8], step: usize) -> bool {
        let mut s = Utf8Stream::default();
        bytes.chunks(step).all(|c| s.push(c)) && s.is_complete()
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let cases: [&[u8]; 8] = [
            "κόσμε".as_bytes(),
            "a€𝄞b".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\xc0\xaf",
            b"abc\xff",
            b"",
        ];
        for bytes in cases {
            for step in 1..=7 {
                assert_eq!(
                    valid_in_pieces(bytes, step),
                    str::from_utf8(bytes).is_ok(),
                    "{bytes:x?} in pieces of {step}"
                );
            }
        }
    }

    #[test]
    fn fails_at_the_first_impossible_byte() {
        let mut s = Utf8Stream::default();
        assert!(s.push("κ".as_bytes()));
        assert!(s.push(b"\xce"));
        assert!(!s.is_complete());
        // 0xce must be followed by a continuation byte: fail now, not at the end.
        assert!(!s.push(b"A rest of the message"));
    }
}
