//! Deterministic identifiers for decisions and suppressed candidates.
//!
//! An id is a pure function of what caused the decision (the cause event id), the decision kind and
//! channel, and a discriminator (e.g. the category a recommendation is about). Re-running the same
//! input therefore reproduces the same id, so a re-send after a crash is recognisable downstream.

/// 128-bit hex id from two FNV-1a 64 passes with different offsets. Not cryptographic: ids only
/// need to be stable and collision-resistant across one customer's history.
pub fn stable_id(prefix: &str, parts: &[&str]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
            b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
        }
    };
    feed(prefix.as_bytes());
    for part in parts {
        // A separator that cannot occur in UTF-8 keeps ("ab","c") and ("a","bc") apart.
        feed(&[0xff]);
        feed(part.as_bytes());
    }
    format!("{prefix}-{a:016x}{b:016x}")
}

/// 64-bit FNV-1a digest of `s` (an event id remembered to recognise its repetition).
pub fn digest64(s: &str) -> [u8; 8] {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in s.as_bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_cause_gives_same_id_and_different_causes_differ() {
        let one = stable_id("d", &["evt-1", "recommendation", "on_site"]);
        assert_eq!(one, stable_id("d", &["evt-1", "recommendation", "on_site"]));
        assert_ne!(one, stable_id("d", &["evt-2", "recommendation", "on_site"]));
        assert_ne!(stable_id("d", &["ab", "c"]), stable_id("d", &["a", "bc"]));
        assert!(one.starts_with("d-") && one.len() == 2 + 32);
    }
}
