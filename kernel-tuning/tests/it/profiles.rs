//! The shipped profiles parse, cover every tunable, say why on every line, agree with `plan`
//! for their reference targets, and make `check` pass when loaded into a fake kernel.

use crate::support::{shipped, FakeHost};
use herald_tune::plan::plan;
use herald_tune::size::parse_size;
use herald_tune::sizing;
use herald_tune::sysctl_file;
use herald_tune::tunables::ALL;
use herald_tune::{check, Role, Status, Target};

const GIB: u64 = 1 << 30;

fn edge_reference() -> Target {
    Target::new(Role::Edge, 1_000_000)
        .with_memory(Some(16 * GIB))
        .with_shards(16)
}

fn processor_reference() -> Target {
    Target::new(Role::Processor, 50_000).with_memory(Some(8 * GIB))
}

/// Every setting line has a comment line directly above it (or above the previous setting
/// line of the same group, for `soft`/`hard` pairs it is the line above).
fn assert_every_setting_commented(name: &str, text: &str, is_setting: impl Fn(&str) -> bool) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if is_setting(l) {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "{name}: no comment above {l:?}"
            );
        }
    }
}

fn is_sysctl_setting(l: &str) -> bool {
    !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')
}

fn mentioned_in_comment(text: &str, key: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with(&format!("# {key}:")))
}

#[test]
fn edge_profile_is_the_plan_for_its_reference() {
    let text = shipped("profiles/edge.conf");
    let entries = sysctl_file::parse(&text).expect("edge.conf parses");
    let p = plan(&edge_reference()).unwrap();
    let got: Vec<(String, String)> = entries.into_iter().map(|e| (e.key, e.value)).collect();
    let want: Vec<(String, String)> = p
        .settings
        .iter()
        .map(|s| (s.key.to_string(), s.value.sysctl_text()))
        .collect();
    assert_eq!(got, want);
    for key in &p.left_default {
        assert!(
            mentioned_in_comment(&text, key),
            "edge.conf does not mention {key}"
        );
    }
    assert_every_setting_commented("edge.conf", &text, is_sysctl_setting);
}

#[test]
fn processor_profile_sets_what_the_plan_sets_and_names_the_rest() {
    let text = shipped("profiles/processor.conf");
    let entries = sysctl_file::parse(&text).expect("processor.conf parses");
    let p = plan(&processor_reference()).unwrap();
    for e in &entries {
        let planned = p
            .value(&e.key)
            .unwrap_or_else(|| panic!("{} is not planned for a processor", e.key));
        assert_eq!(e.value, planned.sysctl_text(), "{}", e.key);
    }
    for t in ALL {
        if let Some(key) = t.sysctl_key() {
            let set = sysctl_file::lookup(&entries, key).is_some();
            assert!(
                set || mentioned_in_comment(&text, key),
                "processor.conf neither sets nor names {key}"
            );
        }
    }
    assert_every_setting_commented("processor.conf", &text, is_sysctl_setting);
}

#[test]
fn limits_d_matches_the_edge_reference() {
    let text = shipped("limits/herald.conf");
    let mut rows = Vec::new();
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(
            f.len(),
            4,
            "limits.d line {l:?} must be <domain> <type> <item> <value>"
        );
        rows.push((
            f[1].to_string(),
            f[2].to_string(),
            f[3].parse::<u64>().expect("numeric limit"),
        ));
    }
    let nofile = sizing::nofile(1_000_000);
    let memlock_kib = sizing::memlock(16) / 1024;
    assert_eq!(
        rows,
        vec![
            ("soft".into(), "nofile".into(), nofile),
            ("hard".into(), "nofile".into(), nofile),
            ("soft".into(), "memlock".into(), memlock_kib),
            ("hard".into(), "memlock".into(), memlock_kib),
        ]
    );
    assert_every_setting_commented("limits/herald.conf", &text, |l| {
        !l.is_empty() && !l.starts_with('#')
    });
}

fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{l:?} is not a directive"));
            assert!(!v.contains('#'), "systemd has no trailing comments: {l:?}");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn systemd_drop_ins_match_the_references() {
    let edge = shipped("systemd/herald-edge.service.d/limits.conf");
    assert!(edge.contains("\n[Service]\n"));
    let d = directives(&edge);
    assert_eq!(d.len(), 2);
    assert_eq!(
        d[0],
        (
            "LimitNOFILE".to_string(),
            sizing::nofile(1_000_000).to_string()
        )
    );
    assert_eq!(d[1].0, "LimitMEMLOCK");
    assert_eq!(parse_size(&d[1].1), Ok(sizing::memlock(16)));
    assert!(edge.contains("CPUAffinity"), "CPU affinity notes");
    assert_every_setting_commented("herald-edge limits.conf", &edge, |l| l.starts_with("Limit"));

    let proc = shipped("systemd/herald-processor.service.d/limits.conf");
    let d = directives(&proc);
    assert_eq!(
        d,
        vec![(
            "LimitNOFILE".to_string(),
            sizing::nofile(50_000).to_string()
        )]
    );
    assert_every_setting_commented("herald-processor limits.conf", &proc, |l| {
        l.starts_with("Limit")
    });
}

#[test]
fn a_kernel_loaded_with_the_edge_profile_passes_check() {
    let host = FakeHost::from_profile(&shipped("profiles/edge.conf"));
    // Keys the edge profile leaves at the kernel default still exist on a real kernel.
    host.sysctl("net.ipv4.ip_local_port_range", "32768 60999");
    host.sysctl("net.ipv4.tcp_tw_reuse", "2");
    host.limits(
        sizing::nofile(1_000_000),
        sizing::nofile(1_000_000),
        sizing::memlock(16),
        sizing::memlock(16),
    );
    let report = check(&host.root(), &edge_reference());
    for f in &report.findings {
        assert!(
            matches!(f.status, Status::Ok | Status::NotApplicable(_)),
            "{f}"
        );
    }
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn a_stock_kernel_with_the_processor_profile_passes_check() {
    let host = FakeHost::stock();
    for e in sysctl_file::parse(&shipped("profiles/processor.conf")).unwrap() {
        host.sysctl(&e.key, &e.value);
    }
    host.limits(65_000, 65_000, 8 << 20, 8 << 20);
    let report = check(&host.root(), &processor_reference());
    for f in &report.findings {
        assert!(
            matches!(f.status, Status::Ok | Status::NotApplicable(_)),
            "{f}"
        );
    }
}
