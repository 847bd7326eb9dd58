//! Small helpers shared by the edge's modules.

/// A random URL-safe token of `bytes` bytes of entropy (hex), from the OS random source.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("the OS random source works");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
