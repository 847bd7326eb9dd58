//! `check` and the edge's start-up check against the real machine (`/`). Whatever this host's
//! `/proc` holds (containers hide or freeze parts of it), every tunable gets a verdict and
//! nothing panics; the verdicts must be self-consistent.

use std::time::Instant;

use herald_tune::tunables::ALL;
use herald_tune::{check, startup_findings, Role, Status, SysRoot, Target};

#[test]
fn check_the_real_machine() {
    let root = SysRoot::host();
    for role in [Role::Edge, Role::Processor] {
        let target = Target::new(role, 100_000)
            .with_memory(root.memory_bytes())
            .with_shards(2);
        let report = check(&root, &target);
        assert_eq!(report.findings.len(), ALL.len());
        for f in &report.findings {
            match &f.status {
                Status::Short => {
                    assert!(
                        f.current.is_some() && f.proposed.is_some() && !f.fix.is_empty(),
                        "{f}"
                    )
                }
                Status::Ok => assert!(f.current.is_some() && f.fix.is_empty(), "{f}"),
                Status::Unknown(r) | Status::NotApplicable(r) => assert!(!r.is_empty(), "{f}"),
            }
        }
        assert_eq!(
            report.exit_code() == 1,
            report.findings.iter().any(|f| f.is_fatal())
        );
        let table = report.render_table();
        assert!(table.lines().count() > ALL.len());
    }
}

#[test]
fn the_edge_startup_check_is_cheap_and_only_reports_shortfalls() {
    let started = Instant::now();
    let findings = startup_findings(Role::Edge, 100_000);
    // A few dozen small reads; a generous bound that still catches anything pathological.
    assert!(
        started.elapsed().as_secs() < 2,
        "took {:?}",
        started.elapsed()
    );
    for f in &findings {
        assert!(f.is_short(), "{f}");
        assert!(!f.to_string().is_empty());
    }
}
