//! The built `herald-tune` binary on this machine: `check`, `plan`, `script`, a dry-run
//! `apply`, and usage errors.

use std::process::{Command, Output};

use herald_tune::tunables::ALL;

fn tune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald-tune"))
        .args(args)
        .output()
        .expect("run herald-tune")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn check_on_this_machine() {
    let o = tune(&["check"]);
    let code = o.status.code().unwrap();
    assert!(code == 0 || code == 1, "exit {code}: {}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("herald-tune check: edge for 100,000 connections"),
        "{out}"
    );
    for t in ALL {
        assert!(out.contains(t.id()), "{} missing:\n{out}", t.id());
    }
    let fatal: usize = out
        .lines()
        .rev()
        .find_map(|l| l.split_once(" fatal, ").map(|(n, _)| n.parse().unwrap()))
        .expect("summary line");
    assert_eq!(code == 1, fatal > 0, "{out}");
}

#[test]
fn check_json_on_this_machine() {
    let o = tune(&[
        "check",
        "--json",
        "--role",
        "processor",
        "--connections",
        "1000",
    ]);
    let code = o.status.code().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(j["target"]["role"], "processor");
    assert_eq!(j["findings"].as_array().unwrap().len(), ALL.len());
    assert_eq!(code == 1, j["fatal"].as_u64().unwrap() > 0);
}

#[test]
fn plan_1m_on_8gib() {
    let o = tune(&["plan", "--connections", "1000000", "--memory", "8GiB"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "fs.file-max = 2220000",
        "fs.nr_open = 1110000",
        "net.core.somaxconn = 62500",
        "net.ipv4.tcp_mem = 277516 346895 416275",
        "net.netfilter.nf_conntrack_max = 1200000",
        "# LimitNOFILE=1110000  -- nofile = connections x 1.1 + 10000",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    assert!(out.contains("carries 1,184,025 connections"));
}

#[test]
fn plan_10m_on_64gib_json() {
    let o = tune(&[
        "plan",
        "--connections",
        "10000000",
        "--memory",
        "64GiB",
        "--shards",
        "32",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["connections_allowed"], 10_064_215);
    let limits = j["limits"].as_array().unwrap();
    assert_eq!(limits[1]["value"], "268435456");
}

#[test]
fn script_on_this_machine_is_valid_bash() {
    let o = tune(&["script"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.sh");
    std::fs::write(&path, &o.stdout).unwrap();
    let st = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(st.success());
    assert!(stdout(&o).contains("conf=/etc/sysctl.d/99-herald-edge.conf\n"));
}

#[test]
fn apply_dry_run_on_this_machine_writes_nothing() {
    let etc = tempfile::tempdir().unwrap();
    let o = tune(&[
        "apply",
        "--dry-run",
        "--connections",
        "1000000",
        "--etc",
        etc.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("dry run: nothing written") || out.starts_with("nothing to change"),
        "{out}"
    );
    assert!(std::fs::read_dir(etc.path()).unwrap().next().is_none());
}

#[test]
fn usage_errors_exit_64() {
    let o = tune(&["plan", "--memory", "8GiB"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--connections"), "{}", stderr(&o));
    let o = tune(&["plan", "--connections", "10", "--memory", "8QB"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--memory"), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown unit"), "{}", stderr(&o));
    let o = tune(&["check", "--connections", "many"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--connections"));
}
