//! The `herald-processor` binary: configuration errors exit 64 naming the key,
//! `--check-config` validates without connecting, an unreachable registry exits 69.

use std::process::Command;

fn processor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald-processor"));
    c.env_clear().env("RUST_LOG", "error");
    c
}

#[test]
fn invalid_configuration_exits_64_naming_the_key() {
    let out = processor()
        .args([
            "--delivery-secret",
            "0123456789abcdef",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .args(["--inflight-per-partition", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`inflight_per_partition`"), "{err}");
    assert!(err.contains("--inflight-per-partition"), "{err}");
    assert_eq!(err.lines().count(), 1, "one message: {err}");

    let out = processor()
        .env("HERALD_PROCESSOR_REQUEST_TIMEOUT", "soon")
        .args([
            "--delivery-secret",
            "0123456789abcdef",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HERALD_PROCESSOR_REQUEST_TIMEOUT"), "{err}");

    let out = processor().output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`delivery_secret`"));

    let out = processor().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn check_config_validates_without_connecting() {
    let out = processor()
        .env("HERALD_PROCESSOR_DELIVERY_SECRET", "0123456789abcdef")
        .args(["--redis", "redis://127.0.0.1:1", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("configuration OK"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "secret printed: {text}");
}

#[test]
fn unreachable_registry_exits_69() {
    let out = processor()
        .args([
            "--delivery-secret",
            "0123456789abcdef",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .args(["--metrics-listen", ""])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("registry"));
}
