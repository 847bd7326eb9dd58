//! Checkers against fake `/proc` trees: stock kernels, tuned kernels, missing files,
//! garbage, partial trees and the edge cases of each value shape.

use crate::support::{FakeHost, STOCK};
use herald_tune::check::evaluate;
use herald_tune::tunables::{by_id, ALL};
use herald_tune::{check, startup_findings_for, Limit, Role, Severity, Status, Target, Value};

fn edge(connections: u64) -> Target {
    Target::new(Role::Edge, connections).with_shards(2)
}

fn status_of(host: &FakeHost, target: &Target, id: &str) -> Status {
    evaluate(by_id(id).unwrap(), &host.root(), target).status
}

#[test]
fn stock_kernel_for_a_million_connection_edge() {
    let host = FakeHost::stock();
    let report = check(&host.root(), &edge(1_000_000));
    assert_eq!(report.findings.len(), ALL.len());
    let short: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.is_short())
        .map(|f| f.id)
        .collect();
    assert_eq!(
        short,
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
            "RLIMIT_NOFILE",
            "RLIMIT_MEMLOCK",
        ]
    );
    // The kernel sized fs.file-max from 23.5 GiB: 2466193 >= 2 x 1110000.
    assert_eq!(report.finding("fs.file-max").unwrap().status, Status::Ok);
    let fatal: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.is_fatal())
        .map(|f| f.id)
        .collect();
    assert!(fatal.contains(&"RLIMIT_NOFILE"));
    assert!(fatal.contains(&"net.ipv4.tcp_mem"));
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.unknown(), 0);
}

#[test]
fn tuned_kernel_passes() {
    let host = FakeHost::stock();
    for (k, v) in [
        ("fs.file-max", "3000000"),
        ("fs.nr_open", "2000000"),
        ("net.core.somaxconn", "65535"),
        ("net.ipv4.tcp_max_syn_backlog", "65535"),
        ("net.core.netdev_max_backlog", "16384"),
        ("net.ipv4.tcp_fin_timeout", "15"),
        ("net.ipv4.tcp_mem", "1049805 1312256 1574708"),
        ("net.ipv4.tcp_rmem", "4096 16384 4194304"),
        ("net.ipv4.tcp_keepalive_time", "300"),
        ("net.ipv4.tcp_keepalive_intvl", "30"),
        ("net.ipv4.tcp_keepalive_probes", "5"),
        ("net.netfilter.nf_conntrack_max", "2000000"),
        ("vm.max_map_count", "262144"),
    ] {
        host.sysctl(k, v);
    }
    host.limits(1_200_000, 1_200_000, 64 << 20, 64 << 20);
    let report = check(&host.root(), &edge(1_000_000));
    let not_ok: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.status != Status::Ok)
        .map(|f| (f.id, f.status.clone()))
        .collect();
    assert_eq!(
        not_ok,
        vec![
            (
                "net.ipv4.ip_local_port_range",
                Status::NotApplicable("no requirement for the edge role".into())
            ),
            (
                "net.ipv4.tcp_tw_reuse",
                Status::NotApplicable("no requirement for the edge role".into())
            ),
        ]
    );
    assert_eq!(
        (report.fatal(), report.warnings(), report.exit_code()),
        (0, 0, 0)
    );
}

#[test]
fn empty_root_is_all_unknown_and_never_fatal() {
    let host = FakeHost::empty();
    let report = check(&host.root(), &edge(1_000_000));
    for f in &report.findings {
        match &f.status {
            Status::Unknown(reason) => assert!(
                reason.contains("does not exist") || reason.contains("absent"),
                "{}: {reason}",
                f.id
            ),
            Status::NotApplicable(_) => {
                assert!(["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"].contains(&f.id))
            }
            other => panic!("{}: {other:?}", f.id),
        }
        assert!(f.fix.is_empty());
        assert!(f.current.is_none());
    }
    // Without /proc/sys/net we cannot tell "conntrack not loaded" from "no /proc": unknown.
    assert!(matches!(
        status_of(&host, &edge(1), "net.netfilter.nf_conntrack_max"),
        Status::Unknown(_)
    ));
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.unknown(), 17);
}

#[test]
fn conntrack_not_loaded_is_not_applicable() {
    let host = FakeHost::stock();
    host.remove(&FakeHost::sysctl_rel("net.netfilter.nf_conntrack_max"));
    match status_of(&host, &edge(1_000_000), "net.netfilter.nf_conntrack_max") {
        Status::NotApplicable(r) => assert_eq!(r, "nf_conntrack is not loaded"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unparsable_values_are_unknown_with_the_path_and_the_text() {
    let host = FakeHost::stock();
    host.sysctl("fs.file-max", "lots");
    host.sysctl("net.ipv4.tcp_mem", "1 2");
    host.sysctl("net.core.somaxconn", "-1");
    host.sysctl("vm.max_map_count", "");
    host.sysctl("fs.nr_open", "99999999999999999999999");
    let t = edge(1_000_000);
    for (id, needle) in [
        ("fs.file-max", "\"lots\" is not an unsigned integer"),
        ("net.ipv4.tcp_mem", "expected 3 number(s), found 2"),
        ("net.core.somaxconn", "\"-1\" is not an unsigned integer"),
        ("vm.max_map_count", "expected 1 number(s), found 0"),
        ("fs.nr_open", "is not an unsigned integer"),
    ] {
        match status_of(&host, &t, id) {
            Status::Unknown(r) => {
                assert!(r.contains(needle), "{id}: {r}");
                assert!(r.contains(&FakeHost::sysctl_rel(id)), "{id}: {r}");
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn a_directory_where_a_file_should_be_is_unreadable() {
    let host = FakeHost::stock();
    let rel = FakeHost::sysctl_rel("vm.max_map_count");
    host.remove(&rel);
    std::fs::create_dir_all(host.path().join(&rel)).unwrap();
    match status_of(&host, &edge(1), "vm.max_map_count") {
        Status::Unknown(r) => assert!(r.starts_with("cannot read"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn extreme_values() {
    let host = FakeHost::stock();
    host.sysctl("fs.file-max", "18446744073709551615");
    host.sysctl("net.ipv4.tcp_fin_timeout", "0");
    assert_eq!(
        status_of(&host, &edge(10_000_000), "fs.file-max"),
        Status::Ok
    );
    assert_eq!(
        status_of(&host, &edge(1), "net.ipv4.tcp_fin_timeout"),
        Status::Ok
    );
    // The smallest target still needs the fixed descriptors.
    host.limits(10_001, 10_001, 8 << 20, 8 << 20);
    assert_eq!(status_of(&host, &edge(1), "RLIMIT_NOFILE"), Status::Short);
    host.limits(10_002, 10_002, 8 << 20, 8 << 20);
    assert_eq!(status_of(&host, &edge(1), "RLIMIT_NOFILE"), Status::Ok);
}

#[test]
fn unlimited_rlimits_satisfy() {
    let host = FakeHost::stock();
    host.file(
        "proc/self/limits",
        "Limit Soft Hard Units\nMax open files            unlimited            unlimited            files\n\
         Max locked memory         unlimited            unlimited            bytes\n",
    );
    assert_eq!(
        status_of(&host, &edge(10_000_000), "RLIMIT_NOFILE"),
        Status::Ok
    );
    assert_eq!(
        status_of(&host, &edge(10_000_000).with_shards(256), "RLIMIT_MEMLOCK"),
        Status::Ok
    );
}

#[test]
fn limits_file_without_the_row_is_unknown() {
    let host = FakeHost::stock();
    host.file(
        "proc/self/limits",
        "Limit Soft Hard Units\nMax cpu time unlimited unlimited seconds\n",
    );
    match status_of(&host, &edge(1), "RLIMIT_NOFILE") {
        Status::Unknown(r) => assert!(r.contains("no \"Max open files\" row"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn memlock_severity_depends_on_glommio_floor() {
    let host = FakeHost::stock();
    let t = edge(1000).with_shards(4);
    host.limits(1 << 20, 1 << 20, 8 << 20, 8 << 20);
    let f = evaluate(by_id("RLIMIT_MEMLOCK").unwrap(), &host.root(), &t);
    assert_eq!(
        (f.status.clone(), f.severity),
        (Status::Short, Severity::Warning)
    );
    host.limits(1 << 20, 1 << 20, 64 << 10, 64 << 10);
    let f = evaluate(by_id("RLIMIT_MEMLOCK").unwrap(), &host.root(), &t);
    assert_eq!(
        (f.status.clone(), f.severity),
        (Status::Short, Severity::Fatal)
    );
    assert!(f.fix.contains("LimitMEMLOCK=33554432"), "{}", f.fix);
    // A processor does not lock memory.
    let p = Target::new(Role::Processor, 1000);
    assert!(matches!(
        evaluate(by_id("RLIMIT_MEMLOCK").unwrap(), &host.root(), &p).status,
        Status::NotApplicable(_)
    ));
}

#[test]
fn io_uring_disabled_states() {
    let host = FakeHost::stock();
    let t = edge(1000);
    host.sysctl("kernel.io_uring_disabled", "2");
    let f = evaluate(by_id("kernel.io_uring_disabled").unwrap(), &host.root(), &t);
    assert!(f.is_fatal());
    assert_eq!(f.fix, "sysctl -w kernel.io_uring_disabled=0");
    host.remove(&FakeHost::sysctl_rel("kernel.io_uring_disabled"));
    match status_of(&host, &t, "kernel.io_uring_disabled") {
        Status::Unknown(r) => assert!(r.contains("before 6.6"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn processor_needs_ports_and_tw_reuse() {
    let host = FakeHost::stock();
    let t = Target::new(Role::Processor, 50_000);
    let report = check(&host.root(), &t);
    let port = report.finding("net.ipv4.ip_local_port_range").unwrap();
    assert_eq!(port.status, Status::Short);
    assert_eq!(port.proposed, Some(Value::List(vec![10240, 65535])));
    let tw = report.finding("net.ipv4.tcp_tw_reuse").unwrap();
    assert_eq!(tw.status, Status::Short);
    assert_eq!(tw.fix, "sysctl -w net.ipv4.tcp_tw_reuse=1");
    // Edge-only settings do not apply.
    for id in [
        "net.core.somaxconn",
        "kernel.io_uring_disabled",
        "vm.max_map_count",
        "net.ipv4.tcp_rmem",
    ] {
        assert!(
            matches!(report.finding(id).unwrap().status, Status::NotApplicable(_)),
            "{id}"
        );
    }
    // 20000 < 65000: fatal for the processor too.
    assert!(report.finding("RLIMIT_NOFILE").unwrap().is_fatal());
}

#[test]
fn fixes_keep_good_components_and_never_lower_hard_limits() {
    let host = FakeHost::stock();
    host.limits(1024, 4_000_000, 8 << 20, 8 << 20);
    let report = check(&host.root(), &edge(1_000_000));
    let rmem = report.finding("net.ipv4.tcp_rmem").unwrap();
    assert_eq!(
        rmem.proposed,
        Some(Value::List(vec![4096, 16384, 33554432]))
    );
    assert_eq!(
        rmem.fix,
        "sysctl -w 'net.ipv4.tcp_rmem=4096 16384 33554432'"
    );
    let mem = report.finding("net.ipv4.tcp_mem").unwrap();
    assert_eq!(
        mem.proposed,
        Some(Value::List(vec![287901, 1312256, 1574708]))
    );
    let nofile = report.finding("RLIMIT_NOFILE").unwrap();
    assert_eq!(
        nofile.proposed,
        Some(Value::Rlimit {
            soft: Limit::Finite(1_110_000),
            hard: Limit::Finite(4_000_000)
        })
    );
    assert!(
        nofile.fix.contains("LimitNOFILE=1110000:4000000"),
        "{}",
        nofile.fix
    );
}

#[test]
fn pid_limits_are_read_from_that_process() {
    let host = FakeHost::stock();
    host.file(
        "proc/4242/limits",
        &FakeHost::limits_text(2_000_000, 2_000_000, 1 << 30, 1 << 30),
    );
    let root = host
        .root()
        .with_limits_of(herald_tune::sysroot::LimitsOf::Pid(4242));
    let report = check(&root, &edge(1_000_000));
    assert_eq!(report.finding("RLIMIT_NOFILE").unwrap().status, Status::Ok);
    assert_eq!(report.finding("RLIMIT_MEMLOCK").unwrap().status, Status::Ok);
}

#[test]
fn json_report_shape() {
    let host = FakeHost::stock();
    let report = check(&host.root(), &edge(1_000_000).with_memory(Some(8 << 30)));
    let j = report.to_json();
    assert_eq!(j["target"]["role"], "edge");
    assert_eq!(j["target"]["connections"], 1_000_000);
    assert_eq!(j["connections_allowed"], 1_184_025);
    let findings = j["findings"].as_array().unwrap();
    assert_eq!(findings.len(), ALL.len());
    for f in findings {
        for key in [
            "id", "current", "required", "severity", "status", "why", "fix", "reason",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
    }
    assert_eq!(j["fatal"].as_u64().unwrap() as usize, report.fatal());
    assert_eq!(j["warnings"].as_u64().unwrap() as usize, report.warnings());
    let nofile = findings
        .iter()
        .find(|f| f["id"] == "RLIMIT_NOFILE")
        .unwrap();
    assert_eq!(nofile["status"], "short");
    assert_eq!(nofile["severity"], "fatal");
    assert_eq!(nofile["current"], "soft 20000, hard 20000");
    assert_eq!(nofile["required"], "soft >= 1110000");
    let port = findings
        .iter()
        .find(|f| f["id"] == "net.ipv4.ip_local_port_range")
        .unwrap();
    assert_eq!(port["status"], "not_applicable");
    assert!(port["fix"].is_null());
}

#[test]
fn table_lists_every_tunable_and_explains_shortfalls() {
    let host = FakeHost::stock();
    let text = check(&host.root(), &edge(1_000_000)).render_table();
    for t in ALL {
        assert!(text.contains(t.id()), "{}", t.id());
    }
    assert!(
        text.contains("fix: sysctl -w net.core.somaxconn=62500"),
        "{text}"
    );
    assert!(text.contains("fatal,"));
}

#[test]
fn startup_findings_are_only_shortfalls() {
    let host = FakeHost::stock();
    let t = edge(1_000_000);
    let findings = startup_findings_for(&host.root(), &t);
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f.is_short() && !f.fix.is_empty()));
    let line = findings
        .iter()
        .find(|f| f.id == "RLIMIT_NOFILE")
        .unwrap()
        .to_string();
    assert!(line.starts_with("fatal RLIMIT_NOFILE: short"), "{line}");
    assert!(line.contains("fix: mkdir -p"), "{line}");
    // On an unreadable tree nothing is reported (and nothing panics).
    assert!(startup_findings_for(&FakeHost::empty().root(), &t).is_empty());
}

#[test]
fn stock_values_table_matches_the_ci_host_shape() {
    // Guard the fixture itself: every tunable except the limits has a stock value.
    let sysctls = ALL.iter().filter(|t| t.sysctl_key().is_some()).count();
    assert_eq!(STOCK.len(), sysctls);
}
