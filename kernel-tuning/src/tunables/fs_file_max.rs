//! `fs.file-max`: the system-wide ceiling on open files.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `fs.file-max` checker.
#[derive(Debug)]
pub struct FsFileMax;

impl Tunable for FsFileMax {
    fn id(&self) -> &'static str {
        "fs.file-max"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "fs.file-max",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        let need = sizing::file_max_need(target.connections);
        Requirement::at_least(
            need,
            need.max(sizing::file_max_default(target.memory_bytes)),
        )
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Fatal
    }

    fn why(&self) -> &'static str {
        "System-wide ceiling on open file handles. Every client socket is a file, so an edge's \
         connections count against it together with everything else on the host. When it is \
         reached, accept() and socket() fail with ENFILE for every process: the edge refuses \
         connections, processors cannot dial, even sshd and the metrics agent fail. It costs \
         nothing until used; file structures are allocated as files are opened."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "2 x nofile (the rest of the host, a second instance during a deploy), at least the kernel default memory / 10 KiB"
    }
}
