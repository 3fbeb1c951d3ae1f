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
//! back to a partition can tell whether anyone else wrote to it meanwhile, and (but markers)
//! its writer's tenure in `tact.tenure`: the offset of the marker its writer's ownership began
//! with. Tenures only grow from owner to owner, so a record whose tenure is older than one
//! written before it comes from an instance that had lost the partition without knowing
//! (paused, cut off), and every restore skips it. Markers alone do not fence: one can land after
//! its writer already lost the partition. What a zombie writes between the next owner's marker
//! and that owner's first record is kept; it is input the new owner applies again, and per-key
//! versions make that a no-op. Compaction can remove the newer records that fence a stale one;
//! fencing that case needs transactions.

use tact_kafka::rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tact_store::{MetaKey, StateKey};

/// The header naming the store that wrote a record.
pub const STORE_HEADER: &str = "tact.store";
/// The header with the writer's tenure (decimal offset of its restore marker).
pub const TENURE_HEADER: &str = "tact.tenure";

/// Who wrote a changelog record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub store: Option<Vec<u8>>,
    pub tenure: Option<i64>,
}

impl Stamp {
    pub fn read(headers: Option<&BorrowedHeaders>) -> Stamp {
        let mut out = Stamp::default();
        for h in headers.into_iter().flat_map(|h| h.iter()) {
            match h.key {
                STORE_HEADER => out.store = h.value.map(<[u8]>::to_vec),
                TENURE_HEADER => {
                    out.tenure = h
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse().ok());
                }
                _ => {}
            }
        }
        out
    }

    pub fn headers(store_id: &[u8], tenure: Option<i64>) -> OwnedHeaders {
        let h = OwnedHeaders::new().insert(Header {
            key: STORE_HEADER,
            value: Some(store_id),
        });
        match tenure {
            Some(t) => h.insert(Header {
                key: TENURE_HEADER,
                value: Some(t.to_string().as_bytes()),
            }),
            None => h,
        }
    }
}

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
