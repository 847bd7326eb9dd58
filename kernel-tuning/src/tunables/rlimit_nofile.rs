//! `RLIMIT_NOFILE`: open files one process may hold.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `RLIMIT_NOFILE` checker.
#[derive(Debug)]
pub struct RlimitNofile;

impl Tunable for RlimitNofile {
    fn id(&self) -> &'static str {
        "RLIMIT_NOFILE"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Rlimit {
            label: "Max open files",
            systemd: "LimitNOFILE",
            limits_item: "nofile",
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        let n = sizing::nofile(target.connections);
        Requirement::rlimit_at_least(n, n)
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Fatal
    }

    fn why(&self) -> &'static str {
        "Descriptors one process may hold: every connection is one, plus listeners, delivery \
         ports, io_uring and timer fds, Redis and Kafka sockets. At the limit accept() fails \
         with EMFILE, the connection stays in the kernel's accept queue and the client times \
         out; the edge looks up but admits nobody. The usual default soft limit of 1024 (or \
         systemd's 524288 hard) is far below a Herald edge's target. Set it in the unit \
         (LimitNOFILE=) and keep fs.nr_open above it. The check reads the limits of the process \
         running it; pass --pid to read a running service's."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "nofile = connections x 1.1 + 10000"
    }
}
