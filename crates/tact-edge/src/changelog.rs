//! The changelog's record format. One compacted topic per job, partitioned like the driving
//! input: partition p holds the writes of input partition p. Keys say what they are:
//!
//! * `s` + a [`StateKey`]: a state value (a null value is its deletion, a tombstone);
//! * `m` + a [`MetaKey`]: partition metadata (applied offsets, watermark, progress);
//! * `x`: a restore marker. A new owner writes one and reads the partition until it sees it:
//!   everything before the marker is everything written before the owner took over, without
//!   asking the broker for end offsets (which some brokers answer wrongly).
//!
//! Every record carries the writing store's id in the `tact.store` header, so a store coming
//! back to a partition can tell whether anyone else wrote to it meanwhile.

use tact_store::{MetaKey, StateKey};

/// The header naming the store that wrote a record.
pub const STORE_HEADER: &str = "tact.store";

const STATE: u8 = b's';
const META: u8 = b'm';
const MARKER: u8 = b'x';

/// What a changelog record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    State(StateKey),
    Meta(MetaKey),
    Marker,
    /// Written by a newer tact: skipped (and counted) rather than misread.
    Unknown,
}

pub fn state_key(k: &StateKey) -> Vec<u8> {
    let mut out = vec![STATE];
    out.extend_from_slice(&k.encode());
    out
}

pub fn meta_key(k: &MetaKey) -> Vec<u8> {
    let mut out = vec![META];
    out.extend_from_slice(&k.encode());
    out
}

pub fn marker_key() -> Vec<u8> {
    vec![MARKER]
}

pub fn decode_key(raw: &[u8]) -> Entry {
    match raw.split_first() {
        Some((&STATE, rest)) => StateKey::decode(rest).map_or(Entry::Unknown, Entry::State),
        Some((&META, rest)) => MetaKey::decode(rest).map_or(Entry::Unknown, Entry::Meta),
        Some((&MARKER, _)) => Entry::Marker,
        _ => Entry::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_keys_say_what_they_are() {
        let k = StateKey::Customer("c-1".into());
        assert_eq!(decode_key(&state_key(&k)), Entry::State(k));
        let m = MetaKey::Applied("clicks".into());
        assert_eq!(decode_key(&meta_key(&m)), Entry::Meta(m));
        assert_eq!(decode_key(&marker_key()), Entry::Marker);
        assert_eq!(decode_key(b"zzz"), Entry::Unknown);
        assert_eq!(decode_key(b""), Entry::Unknown);
    }
}
