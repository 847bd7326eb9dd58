//! `fs.nr_open`: the largest RLIMIT_NOFILE a process may be given.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `fs.nr_open` checker.
#[derive(Debug)]
pub struct FsNrOpen;

impl Tunable for FsNrOpen {
    fn id(&self) -> &'static str {
        "fs.nr_open"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "fs.nr_open",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        let need = sizing::nofile(target.connections);
        Requirement::at_least(need, need.max(sizing::NR_OPEN_DEFAULT))
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Fatal
    }

    fn why(&self) -> &'static str {
        "Largest RLIMIT_NOFILE any process may be given (default 1048576). setrlimit() above \
         it fails with EPERM and systemd refuses to start a unit whose LimitNOFILE exceeds it, \
         so an edge sized for more than ~950k connections needs nr_open raised before its \
         LimitNOFILE can be. It costs nothing by itself: a process's descriptor table grows \
         only as it opens files (8 bytes per slot)."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "nofile (the largest process limit it must admit), at least the kernel default 1048576"
    }
}
