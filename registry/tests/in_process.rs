//! The shared registry scenarios against the in-process back end (single-node mode), which
//! must behave exactly like Redis.

mod common;

use common::{runtime, Harness};

#[test]
fn in_process_register_lookup_unregister() {
    runtime().block_on(common::register_lookup_unregister(&Harness::in_process(
        "ip",
    )));
}

#[test]
fn in_process_multi_device_users() {
    runtime().block_on(common::multi_device_users(&Harness::in_process("ip")));
}

#[test]
fn in_process_expired_fields_ignored_and_pruned() {
    runtime().block_on(common::expired_fields_ignored_and_pruned(
        &Harness::in_process("ip"),
    ));
}

#[test]
fn in_process_newer_connection_wins() {
    runtime().block_on(common::newer_connection_wins(&Harness::in_process("ip")));
}

#[test]
fn in_process_race_10000_interleavings() {
    runtime().block_on(common::race_interleavings(
        &Harness::in_process("ip"),
        10_000,
    ));
}

#[test]
fn in_process_edge_membership() {
    runtime().block_on(common::edge_membership(&Harness::in_process("ip")));
}

#[test]
fn in_process_invalid_input_is_refused() {
    runtime().block_on(common::invalid_input_is_refused(&Harness::in_process("ip")));
}
