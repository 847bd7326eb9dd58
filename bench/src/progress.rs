//! Progress bars for long phases (connecting, publishing, waiting for reconnects). They draw
//! on stderr only when it is a terminal; step summaries are also printed as plain lines so a
//! log shows what happened.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units named `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>24} [{bar:32}] {pos}/{len} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Prints a status line above any bar.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("herald-bench: {}", msg.as_ref());
}
