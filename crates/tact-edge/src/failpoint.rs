//! Crash points between the edge's commit steps, for the fault matrix (`make faults`).
//!
//! Compiled in only with the `failpoints` feature (a build of its own, never a release); without
//! it every point is an empty inline function. Configured by the `FAILPOINTS` environment
//! variable in the `fail` crate's syntax: `FAILPOINTS='edge::after_store_commit=3*off->return'`
//! passes the point three times and crashes the process the fourth. The `return` action aborts
//! the process on the spot, as kill -9 would: no destructor runs, nothing is flushed, the group is
//! not told. `sleep(ms)`, `pause` and `panic` work as the crate documents.

/// Every crash point, in the order a record's effects pass them.
pub const POINTS: &[&str] = &[
    "edge::after_store_commit",
    "edge::after_send",
    "edge::after_delivery",
    "edge::after_outbox_delete",
    "edge::before_offset_commit",
    "edge::after_offset_commit",
    "edge::after_restore_chunk",
];

/// Reads `FAILPOINTS` once at start; returns what it configured (for the start-up log).
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<String> {
    let wanted = std::env::var("FAILPOINTS").unwrap_or_default();
    // The scenario holds the crate's global lock for the life of the process: nothing else
    // configures points here.
    std::mem::forget(fail::FailScenario::setup());
    Some(wanted)
}

/// A build without crash points: nothing to configure.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<String> {
    None
}

#[cfg(feature = "failpoints")]
pub(crate) fn crash_point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unlisted crash point {name}");
    fail::fail_point!(name, |_| {
        eprintln!("tact: crash point {name} reached: aborting as kill -9 would");
        std::process::abort()
    });
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn crash_point(_name: &'static str) {}
