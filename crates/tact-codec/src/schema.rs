//! The shipped Avro schemas, compiled in so the binary and `schemas/` can never disagree.

use serde_avro_fast::Schema;
use std::sync::OnceLock;

/// (file name, JSON text) of every shipped schema.
pub const FILES: [(&str, &str); 7] = [
    ("click_event.avsc", CLICK_EVENT),
    ("profile_command.avsc", PROFILE_COMMAND),
    ("decision.avsc", DECISION),
    ("suppressed_candidate.avsc", SUPPRESSED),
    ("dead_letter.avsc", DEAD_LETTER),
    ("erasure_receipt.avsc", ERASURE_RECEIPT),
    ("catalog_release.avsc", CATALOG_RELEASE),
];

pub const CLICK_EVENT: &str = include_str!("../../../schemas/click_event.avsc");
pub const PROFILE_COMMAND: &str = include_str!("../../../schemas/profile_command.avsc");
pub const DECISION: &str = include_str!("../../../schemas/decision.avsc");
pub const SUPPRESSED: &str = include_str!("../../../schemas/suppressed_candidate.avsc");
pub const DEAD_LETTER: &str = include_str!("../../../schemas/dead_letter.avsc");
pub const ERASURE_RECEIPT: &str = include_str!("../../../schemas/erasure_receipt.avsc");
pub const CATALOG_RELEASE: &str = include_str!("../../../schemas/catalog_release.avsc");

/// Earlier versions of input schemas whose every datum reads unchanged with the shipped one (they
/// differ only by symbols appended to an enum): records framed with their fingerprints are
/// accepted. `click_event.v1` lacks the chat and callback event types.
pub const CLICK_EVENT_V1: &str = include_str!("../../../schemas/history/click_event.v1.avsc");

/// True when single-object input stamped with `fingerprint` may be read with `schema`: its own
/// fingerprint, or that of an earlier version listed above.
pub fn readable_fingerprint(schema: &Schema, fingerprint: &[u8]) -> bool {
    fingerprint == schema.rabin_fingerprint()
        || (schema.rabin_fingerprint() == click_event().rabin_fingerprint()
            && fingerprint == click_event_v1().rabin_fingerprint())
}

macro_rules! parsed {
    ($fn_name:ident, $text:ident) => {
        pub fn $fn_name() -> &'static Schema {
            static CELL: OnceLock<Schema> = OnceLock::new();
            CELL.get_or_init(|| {
                $text.parse().expect(concat!(
                    "shipped schema ",
                    stringify!($text),
                    " parses (checked by tests)"
                ))
            })
        }
    };
}

parsed!(click_event, CLICK_EVENT);
parsed!(profile_command, PROFILE_COMMAND);
parsed!(decision, DECISION);
parsed!(suppressed, SUPPRESSED);
parsed!(dead_letter, DEAD_LETTER);
parsed!(erasure_receipt, ERASURE_RECEIPT);
parsed!(catalog_release, CATALOG_RELEASE);
parsed!(click_event_v1, CLICK_EVENT_V1);

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_schema_parses() {
        super::click_event();
        super::profile_command();
        super::decision();
        super::suppressed();
        super::dead_letter();
        super::erasure_receipt();
        super::catalog_release();
        super::click_event_v1();
    }
}
