//! The shared registry scenarios against the in-process back end (single-node mode), which
//! must behave exactly like Redis.

use crate::support::{runtime, Harness};

#[test]
fn in_process_register_lookup_unregister() {
    runtime().block_on(crate::support::register_lookup_unregister(
        &Harness::in_process("ip"),
    ));
}

#[test]
fn in_process_one_batch_many_operations_per_key() {
    runtime().block_on(crate::support::one_batch_many_operations_per_key(
        &Harness::in_process("ip"),
    ));
}

#[test]
fn in_process_multi_device_users() {
    runtime().block_on(crate::support::multi_device_users(&Harness::in_process(
        "ip",
    )));
}

#[test]
fn in_process_expired_fields_ignored_and_pruned() {
    runtime().block_on(crate::support::expired_fields_ignored_and_pruned(
        &Harness::in_process("ip"),
    ));
}

#[test]
fn in_process_newer_connection_wins() {
    runtime().block_on(crate::support::newer_connection_wins(&Harness::in_process(
        "ip",
    )));
}

#[test]
fn in_process_race_10000_interleavings() {
    runtime().block_on(crate::support::race_interleavings(
        &Harness::in_process("ip"),
        10_000,
    ));
}

#[test]
fn in_process_edge_membership() {
    runtime().block_on(crate::support::edge_membership(&Harness::in_process("ip")));
}

#[test]
fn in_process_invalid_input_is_refused() {
    runtime().block_on(crate::support::invalid_input_is_refused(
        &Harness::in_process("ip"),
    ));
}

#[test]
fn in_process_history_append_and_read() {
    runtime().block_on(crate::support::history_append_and_read(
        &Harness::in_process("ip"),
    ));
}
