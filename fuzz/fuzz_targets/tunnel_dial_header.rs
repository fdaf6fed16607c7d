//! `rancher_tunnel::fuzzing::dial_header`: see its documentation for the input format and the invariants.
#![no_main]

/// No single allocation above 1 MiB.
#[global_allocator]
static ALLOCATOR: rancher_fuzz::Limited<1> = rancher_fuzz::Limited;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_tunnel::fuzzing::dial_header(data));
