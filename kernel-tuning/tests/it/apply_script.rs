//! `apply` and `script` against fake hosts: the diff, dry runs, writing and merging the
//! sysctl.d file, refusing to clobber a file it cannot parse, and the generated bash script
//! run for real with `id` and `sysctl` stubbed out.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::FakeHost;
use herald_tune::cli::run;
use herald_tune::sysctl_file;

fn tune(args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        std::iter::once("herald-tune").chain(args.iter().copied()),
        &mut out,
        &mut err,
    );
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn host_args<'a>(
    host: &'a FakeHost,
    etc: &'a str,
    cmd: &'a str,
    connections: &'a str,
) -> Vec<&'a str> {
    vec![
        cmd,
        "--root",
        host.path().to_str().unwrap(),
        "--etc",
        etc,
        "--connections",
        connections,
        "--shards",
        "2",
    ]
}

fn conf(host: &FakeHost) -> std::path::PathBuf {
    host.etc().join("sysctl.d/99-herald-edge.conf")
}

/// What `sysctl -p` would do: copy the file's values into the fake kernel.
fn load_into(host: &FakeHost, path: &Path) {
    for e in sysctl_file::parse(&std::fs::read_to_string(path).unwrap()).unwrap() {
        host.sysctl(&e.key, &e.value);
    }
}

#[test]
fn dry_run_shows_the_diff_and_writes_nothing() {
    let host = FakeHost::stock();
    let etc = host.etc();
    let mut args = host_args(&host, etc.to_str().unwrap(), "apply", "1000000");
    args.push("--dry-run");
    let (code, out, err) = tune(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("live kernel -> new:\n"), "{out}");
    assert!(
        out.contains("  net.core.somaxconn: 4096 -> 62500\n"),
        "{out}"
    );
    assert!(
        out.contains("  net.ipv4.tcp_rmem: 4096 131072 33554432 -> 4096 16384 33554432\n"),
        "{out}"
    );
    assert!(out.contains("(absent)\n"), "{out}");
    assert!(out.contains("\n+net.core.somaxconn = 62500\n"), "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert!(out.contains("note: RLIMIT_NOFILE is short"), "{out}");
    assert!(!conf(&host).exists());
}

#[test]
fn apply_writes_merges_and_then_has_nothing_to_do() {
    let host = FakeHost::stock();
    let etc = host.etc();
    let etc = etc.to_str().unwrap();

    let (code, out, err) = tune(&host_args(&host, etc, "apply", "1000000"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote "), "{out}");
    assert!(out.contains("not loaded: --root is not /"), "{out}");
    let text = std::fs::read_to_string(conf(&host)).unwrap();
    let entries = sysctl_file::parse(&text).unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "fs.nr_open",
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.core.netdev_max_backlog",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_mem",
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
            "net.netfilter.nf_conntrack_max",
            "vm.max_map_count",
        ]
    );
    // min kept (no bound on it); pressure and max from the 1M budget on a 23.5 GiB host.
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.tcp_mem"),
        Some("287901 1312256 1574708")
    );
    assert!(
        text.contains("# backlog = clamp(connections / 16, 4096, 65535)"),
        "{text}"
    );
    assert!(
        text.contains("(was 4096)\nnet.core.somaxconn = 62500\n"),
        "{text}"
    );

    // The kernel now has the values: nothing to change, the file stays.
    load_into(&host, &conf(&host));
    let (code, out, _) = tune(&host_args(&host, etc, "apply", "1000000"));
    assert_eq!(code, 0);
    assert!(out.starts_with("nothing to change"), "{out}");
    assert_eq!(std::fs::read_to_string(conf(&host)).unwrap(), text);

    // A bigger target changes some keys and keeps the earlier ones.
    let (code, out, err) = tune(&host_args(&host, etc, "apply", "2000000"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\n-net.core.somaxconn = 62500\n"), "{out}");
    assert!(out.contains("\n+net.core.somaxconn = 65535\n"), "{out}");
    let text = std::fs::read_to_string(conf(&host)).unwrap();
    assert!(
        text.contains("# kept from an earlier apply\nnet.ipv4.tcp_keepalive_time = 300\n"),
        "{text}"
    );
    let entries = sysctl_file::parse(&text).unwrap();
    assert_eq!(
        sysctl_file::lookup(&entries, "fs.file-max"),
        Some("4420000")
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.key == "net.core.somaxconn")
            .count(),
        1
    );
}

#[test]
fn foreign_keys_in_the_file_are_kept() {
    let host = FakeHost::stock();
    host.file(
        "etc/sysctl.d/99-herald-edge.conf",
        "# mine\nnet.ipv4.tcp_congestion_control = bbr\nnet.core.somaxconn = 1\n",
    );
    let etc = host.etc();
    let (code, _, err) = tune(&host_args(&host, etc.to_str().unwrap(), "apply", "1000000"));
    assert_eq!(code, 0, "{err}");
    let entries = sysctl_file::parse(&std::fs::read_to_string(conf(&host)).unwrap()).unwrap();
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.tcp_congestion_control"),
        Some("bbr")
    );
    assert_eq!(
        sysctl_file::lookup(&entries, "net.core.somaxconn"),
        Some("62500")
    );
}

#[test]
fn an_unparsable_existing_file_is_not_overwritten() {
    let host = FakeHost::stock();
    host.file("etc/sysctl.d/99-herald-edge.conf", "this is not sysctl\n");
    let etc = host.etc();
    let (code, _, err) = tune(&host_args(&host, etc.to_str().unwrap(), "apply", "1000000"));
    assert_eq!(code, 1);
    assert!(err.contains("is not a sysctl.d file"), "{err}");
    assert_eq!(
        std::fs::read_to_string(conf(&host)).unwrap(),
        "this is not sysctl\n"
    );
}

#[test]
fn processor_apply_uses_its_own_file() {
    let host = FakeHost::stock();
    let etc = host.etc();
    let mut args = host_args(&host, etc.to_str().unwrap(), "apply", "50000");
    args.extend(["--role", "processor"]);
    let (code, _, err) = tune(&args);
    assert_eq!(code, 0, "{err}");
    let text =
        std::fs::read_to_string(host.etc().join("sysctl.d/99-herald-processor.conf")).unwrap();
    let entries = sysctl_file::parse(&text).unwrap();
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.ip_local_port_range"),
        Some("10240 65535")
    );
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.tcp_tw_reuse"),
        Some("1")
    );
    assert_eq!(sysctl_file::lookup(&entries, "net.core.somaxconn"), None);
}

fn script_for(host: &FakeHost, connections: &str) -> String {
    let etc = host.etc();
    let (code, out, err) = tune(&host_args(
        host,
        etc.to_str().unwrap(),
        "script",
        connections,
    ));
    assert_eq!(code, 0, "{err}");
    out
}

fn bash_syntax_ok(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sh");
    std::fs::write(&path, script).unwrap();
    let st = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .expect("bash");
    assert!(st.success(), "bash -n failed on:\n{script}");
}

#[test]
fn script_renders_reviewable_bash() {
    let host = FakeHost::stock();
    let s = script_for(&host, "1000000");
    bash_syntax_ok(&s);
    assert!(s.starts_with("#!/usr/bin/env bash\n"));
    assert!(s.contains("set -euo pipefail\n"));
    assert!(s.contains("set_sysctl net.core.somaxconn 62500\n"), "{s}");
    assert!(
        s.contains("set_sysctl net.ipv4.tcp_rmem '4096 16384 33554432'\n"),
        "{s}"
    );
    assert!(
        s.contains("# net.core.somaxconn (warning): now 4096, required >= 62500.\n"),
        "{s}"
    );
    assert!(
        s.contains("# Already fine on this host: fs.file-max (2466193)"),
        "{s}"
    );
    assert!(
        s.contains("#     mkdir -p /etc/systemd/system/herald-edge.service.d"),
        "{s}"
    );
    // Every command line that sets something has a why-comment above it.
    let lines: Vec<&str> = s.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("set_sysctl ") {
            assert!(lines[i - 1].starts_with("# "), "{l}");
        }
    }
}

#[test]
fn script_with_nothing_to_do_says_so() {
    let host = FakeHost::stock();
    for (k, v) in [
        ("net.ipv4.tcp_fin_timeout", "15"),
        ("net.ipv4.tcp_keepalive_time", "300"),
        ("net.ipv4.tcp_keepalive_intvl", "30"),
        ("net.ipv4.tcp_keepalive_probes", "5"),
    ] {
        host.sysctl(k, v);
    }
    let etc = host.etc();
    let mut args = host_args(&host, etc.to_str().unwrap(), "script", "100");
    args.extend(["--role", "processor"]);
    host.sysctl("net.ipv4.ip_local_port_range", "10240 65535");
    host.sysctl("net.ipv4.tcp_tw_reuse", "1");
    let (code, s, _) = tune(&args);
    assert_eq!(code, 0);
    bash_syntax_ok(&s);
    assert!(
        s.contains("# Every sysctl already meets the target on this host: nothing to set.\n"),
        "{s}"
    );
    assert!(!s.contains("\nset_sysctl "));
}

fn stub(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn script_runs_and_is_idempotent_with_stubbed_sysctl() {
    let host = FakeHost::stock();
    host.file(
        "etc/sysctl.d/99-herald-edge.conf",
        "net.ipv4.tcp_congestion_control = bbr\nnet.core.somaxconn = 1\n",
    );
    let s = script_for(&host, "1000000");
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = work.path().join("sysctl.log");
    stub(&bin, "id", "echo 0");
    stub(
        &bin,
        "sysctl",
        &format!("echo \"$@\" >> '{}'", log.display()),
    );
    let script = work.path().join("tune.sh");
    std::fs::write(&script, &s).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for _ in 0..2 {
        let out = Command::new("bash")
            .arg(&script)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let entries = sysctl_file::parse(&std::fs::read_to_string(conf(&host)).unwrap()).unwrap();
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.tcp_congestion_control"),
        Some("bbr")
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.key == "net.core.somaxconn")
            .count(),
        1
    );
    assert_eq!(
        sysctl_file::lookup(&entries, "net.core.somaxconn"),
        Some("62500")
    );
    assert_eq!(
        sysctl_file::lookup(&entries, "net.ipv4.tcp_rmem"),
        Some("4096 16384 33554432")
    );
    assert_eq!(entries.len(), 13, "{entries:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("-w net.core.somaxconn=62500\n"), "{log}");
    assert!(
        log.contains("-w net.ipv4.tcp_rmem=4096 16384 33554432\n"),
        "{log}"
    );
    assert_eq!(log.lines().count(), 24, "12 keys, twice:\n{log}");
}

#[test]
fn script_refuses_to_run_unprivileged() {
    let host = FakeHost::stock();
    let s = script_for(&host, "1000000");
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    stub(&bin, "id", "echo 1000");
    stub(&bin, "sysctl", "exit 99");
    let script = work.path().join("tune.sh");
    std::fs::write(&script, &s).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(&script)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run as root"));
    assert!(!conf(&host).exists());
}
