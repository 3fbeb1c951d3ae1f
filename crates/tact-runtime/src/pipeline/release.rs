//! New releases from the catalog topic, announced to the followers of the partitions this
//! instance owns. Every instance reads the whole catalog; each partition keeps in its own
//! (replicated) metadata how far the releases of each catalog partition reached its followers, so
//! a release reaches each follower exactly once, whichever instance owns the partition when, and
//! a partition that moves mid-announcement continues where it stopped.

use tact_store::{decode_i64, encode_i64, MetaKey, Partition, StateStore, StoreError};

/// Followers handled per commit: a release with a million followers is many bounded commits,
/// each recording how far it got.
pub const RELEASE_PAGE: usize = 500;

/// How far one catalog partition's releases reached one input partition's followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every release up to and including this offset is announced.
    Done(i64),
    /// The release at this offset is announced up to (and including) this follower.
    At(i64, String),
}

impl Progress {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Progress::Done(o) => [b"d".as_slice(), &encode_i64(*o)].concat(),
            Progress::At(o, after) => [b"a".as_slice(), &encode_i64(*o), after.as_bytes()].concat(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Progress> {
        let (tag, rest) = bytes.split_first()?;
        let o = decode_i64(rest.get(..8)?)?;
        match tag {
            b'd' => Some(Progress::Done(o)),
            b'a' => Some(Progress::At(
                o,
                String::from_utf8(rest.get(8..)?.to_vec()).ok()?,
            )),
            _ => None,
        }
    }

    /// The next catalog offset this partition needs read.
    pub fn next(&self) -> i64 {
        match self {
            Progress::Done(o) => o + 1,
            Progress::At(o, _) => *o,
        }
    }
}

pub fn progress(
    store: &dyn StateStore,
    p: Partition,
    catalog_partition: i32,
) -> Result<Option<Progress>, StoreError> {
    let raw = store.meta(p, &MetaKey::Releases(catalog_partition))?;
    raw.map(|v| {
        Progress::decode(&v).ok_or_else(|| {
            StoreError::Fatal(format!(
                "release progress of partition {p} (catalog partition {catalog_partition}) is corrupt"
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_and_says_where_to_read_next() {
        for p in [
            Progress::Done(-1),
            Progress::Done(7),
            Progress::At(9, "cust-3".into()),
        ] {
            assert_eq!(Progress::decode(&p.encode()), Some(p));
        }
        assert_eq!(Progress::Done(7).next(), 8);
        assert_eq!(Progress::At(9, "c".into()).next(), 9);
        assert_eq!(Progress::decode(b"x"), None);
    }
}
