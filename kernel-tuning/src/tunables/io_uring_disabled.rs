//! `kernel.io_uring_disabled`: whether processes may create io_uring instances.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sysroot::{ReadError, SysRoot};
use crate::target::{Role, Target};
use crate::value::Value;

/// The sysctl key.
const KEY: &str = "kernel.io_uring_disabled";

/// `kernel.io_uring_disabled` checker.
#[derive(Debug)]
pub struct IoUringDisabled;

impl Tunable for IoUringDisabled {
    fn id(&self) -> &'static str {
        KEY
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl { key: KEY, arity: 1 }
    }

    /// A missing file is not proof io_uring works: kernels before 6.6 lack the sysctl (and
    /// allow io_uring), kernels built without io_uring lack it too. Say both.
    fn current(&self, root: &SysRoot) -> Result<Value, ReadError> {
        match root.read_sysctl(KEY, 1) {
            Err(ReadError::Missing { path }) => Err(ReadError::Unreadable {
                path,
                error:
                    "absent: a kernel before 6.6 (io_uring allowed) or one built without io_uring"
                        .to_string(),
            }),
            other => other,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => Requirement::exactly(0),
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, role: Role, _: Option<&Value>) -> Severity {
        match role {
            Role::Edge => Severity::Fatal,
            Role::Processor => Severity::Warning,
        }
    }

    fn why(&self) -> &'static str {
        "Since Linux 6.6 an administrator can switch io_uring off: 1 allows it only for \
         processes with CAP_SYS_ADMIN or in kernel.io_uring_group, 2 forbids it for everyone. \
         The edge's shards run on glommio, which does all its I/O through io_uring, so with 2 \
         (or 1 and an unprivileged service user) the edge cannot start at all. Hardened images \
         and some container hosts set it on purpose; the processor (tokio, epoll) does not \
         care."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "0: glommio needs io_uring",
            Role::Processor => "kernel default: tokio uses epoll",
        }
    }
}
