//! herald-tune's integration tests, one binary (one link) for all of them: fake hosts for the
//! checkers, the plan arithmetic, the shipped profiles, the apply/script paths, the built
//! binary's CLI, and a smoke test against this machine.

mod apply_script;
mod checkers;
mod cli;
mod plan;
mod profiles;
mod smoke;
mod support;
