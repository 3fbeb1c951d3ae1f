//! Event time. Milliseconds since the Unix epoch, as carried by the events themselves.

use serde::{Deserialize, Serialize};

/// A point in event time (milliseconds since the Unix epoch, UTC).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn plus_minutes(self, minutes: u32) -> Timestamp {
        Timestamp(self.0 + minutes as i64 * 60_000)
    }

    /// Milliseconds from `earlier` to `self`; negative when events arrive out of order.
    pub const fn since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }
}
