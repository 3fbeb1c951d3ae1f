//! The one key layout. Every key the store holds starts with the partition it belongs to, so one
//! partition's data is a contiguous range in every keyspace: it can be restored, dropped on revoke
//! and compacted on its own. Nothing outside this module turns keys into bytes.
//!
//! Partitions are encoded order-preserving (sign bit flipped, big-endian), so [`PROCESS`] (the
//! process's own bookkeeping, never an input partition) sorts before partition 0.

/// An input partition number, or [`PROCESS`].
pub type Partition = i32;

/// The scope of what belongs to this process rather than to an input partition (its store id,
/// an interrupted purge, the outbox sequence).
pub const PROCESS: Partition = i32::MIN;

fn ord_i32(v: i32) -> [u8; 4] {
    ((v as u32) ^ (1 << 31)).to_be_bytes()
}

fn from_ord_i32(b: [u8; 4]) -> i32 {
    (u32::from_be_bytes(b) ^ (1 << 31)) as i32
}

fn ord_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_ord_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// `[partition][rest]`.
pub(crate) fn scoped(p: Partition, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rest.len());
    out.extend_from_slice(&ord_i32(p));
    out.extend_from_slice(rest);
    out
}

/// Splits a stored key into its partition and the rest.
pub(crate) fn unscope(raw: &[u8]) -> Option<(Partition, &[u8])> {
    let (p, rest) = raw.split_first_chunk::<4>()?;
    Some((from_ord_i32(*p), rest))
}

/// The key range `[lower, upper)` holding everything of partition `p` (Kafka partition numbers
/// are far below `i32::MAX`, whose range would have no finite upper bound).
pub(crate) fn partition_range(p: Partition) -> (Vec<u8>, Vec<u8>) {
    let next = p.saturating_add(1).max(p);
    (ord_i32(p).to_vec(), ord_i32(next).to_vec())
}

/// The exclusive upper bound of every key starting with `prefix` (`None`: no bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while upper.last() == Some(&0xff) {
        upper.pop();
    }
    let last = upper.last_mut()?;
    *last += 1;
    Some(upper)
}

/// A replicated value of a partition: what its changelog carries and a restore brings back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// One customer's decision state.
    Customer(String),
    /// An insights session buffer, by its salted reference (never a person's id).
    Session([u8; 16]),
    /// This partition's share of an insights window, by window start.
    Window(i64),
    /// A share of a window another partition sent to this partition to merge.
    Merge { window: i64, source: Partition },
    /// Insights: how far a source partition has closed its windows (for the merge here). State,
    /// not metadata: it must land in the changelog before the deletions of the shares it closed.
    Progress(Partition),
    /// The salt of the partition's insights session references. State, written before the
    /// first session that uses it, so a partly replicated partition never has sessions without it.
    Salt,
}

/// The kinds of [`StateKey`], for scanning one kind of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Customer,
    Session,
    Window,
    Merge,
    Progress,
    Salt,
}

impl StateKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            StateKind::Customer => b'c',
            StateKind::Session => b's',
            StateKind::Window => b'w',
            StateKind::Merge => b'm',
            StateKind::Progress => b'p',
            StateKind::Salt => b'k',
        }
    }
}

impl StateKey {
    pub fn kind(&self) -> StateKind {
        match self {
            StateKey::Customer(_) => StateKind::Customer,
            StateKey::Session(_) => StateKind::Session,
            StateKey::Window(_) => StateKind::Window,
            StateKey::Merge { .. } => StateKind::Merge,
            StateKey::Progress(_) => StateKind::Progress,
            StateKey::Salt => StateKind::Salt,
        }
    }

    /// The key within its partition (also the changelog record's key).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.kind().tag()];
        match self {
            StateKey::Customer(id) => out.extend_from_slice(id.as_bytes()),
            StateKey::Session(r) => out.extend_from_slice(r),
            StateKey::Window(start) => out.extend_from_slice(&ord_i64(*start)),
            StateKey::Merge { window, source } => {
                out.extend_from_slice(&ord_i64(*window));
                out.extend_from_slice(&ord_i32(*source));
            }
            StateKey::Progress(source) => out.extend_from_slice(&ord_i32(*source)),
            StateKey::Salt => {}
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StateKey> {
        let (tag, rest) = bytes.split_first()?;
        Some(match tag {
            b'c' => StateKey::Customer(String::from_utf8(rest.to_vec()).ok()?),
            b's' => StateKey::Session(<[u8; 16]>::try_from(rest).ok()?),
            b'w' => StateKey::Window(from_ord_i64(<[u8; 8]>::try_from(rest).ok()?)),
            b'm' => {
                let (w, s) = rest.split_first_chunk::<8>()?;
                StateKey::Merge {
                    window: from_ord_i64(*w),
                    source: from_ord_i32(<[u8; 4]>::try_from(s).ok()?),
                }
            }
            b'p' => StateKey::Progress(from_ord_i32(<[u8; 4]>::try_from(rest).ok()?)),
            b'k' if rest.is_empty() => StateKey::Salt,
            _ => return None,
        })
    }

    pub fn customer_id(&self) -> Option<&str> {
        match self {
            StateKey::Customer(id) => Some(id),
            _ => None,
        }
    }
}

/// Replicated metadata of a partition: travels in its changelog with the state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaKey {
    /// The offset of the last record applied from this input topic's partition.
    Applied(String),
    /// The partition's event-time watermark.
    Watermark,
    /// How far new releases of one catalog partition reached this partition's followers.
    Releases(Partition),
    /// Insights windows ending at or before this are closed for this partition.
    ClosedThrough,
}

impl MetaKey {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            MetaKey::Applied(topic) => {
                let mut out = b"a".to_vec();
                out.extend_from_slice(topic.as_bytes());
                out
            }
            MetaKey::Watermark => b"w".to_vec(),
            MetaKey::Releases(c) => {
                let mut out = b"r".to_vec();
                out.extend_from_slice(&ord_i32(*c));
                out
            }
            MetaKey::ClosedThrough => b"c".to_vec(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<MetaKey> {
        let (tag, rest) = bytes.split_first()?;
        Some(match tag {
            b'a' => MetaKey::Applied(String::from_utf8(rest.to_vec()).ok()?),
            b'w' if rest.is_empty() => MetaKey::Watermark,
            b'r' => MetaKey::Releases(from_ord_i32(<[u8; 4]>::try_from(rest).ok()?)),
            b'c' if rest.is_empty() => MetaKey::ClosedThrough,
            _ => return None,
        })
    }
}

/// Local bookkeeping, never replicated: it describes this store, not the partition's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalKey {
    /// Per partition: the changelog offset up to which this store's data of the partition is
    /// known to be current (absent: the data here, if any, is not to be trusted).
    Checkpoint,
    /// [`PROCESS`]: a random id of this store, stamped on every changelog record it writes.
    StoreId,
    /// [`PROCESS`]: set with an erasure, cleared after its purge (a crash in between re-runs it).
    PurgePending,
    /// [`PROCESS`]: the next outbox sequence number.
    OutboxNext,
    /// [`PROCESS`]: the layout version the store was written with.
    LayoutVersion,
}

impl LocalKey {
    pub(crate) fn encode(self) -> &'static [u8] {
        match self {
            LocalKey::Checkpoint => b"checkpoint",
            LocalKey::StoreId => b"store_id",
            LocalKey::PurgePending => b"purge_pending",
            LocalKey::OutboxNext => b"outbox_next",
            LocalKey::LayoutVersion => b"layout_version",
        }
    }
}

/// A derived index entry (rebuilt from the state on restore, never replicated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    /// `customer` follows `subject` (a brand or artist).
    Follow { subject: String, customer: String },
}

/// The prefix shared by a group of [`IndexKey`]s, for scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPrefix {
    /// Every follower of `subject`.
    Followers(String),
}

fn follow_prefix(subject: &str) -> Vec<u8> {
    let len = u16::try_from(subject.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + subject.len());
    out.push(b'f');
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(subject.as_bytes());
    out
}

impl IndexPrefix {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            IndexPrefix::Followers(subject) => follow_prefix(subject),
        }
    }
}

impl IndexKey {
    /// `f`, the subject's length, the subject, the customer: one subject's followers are one
    /// contiguous range.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            IndexKey::Follow { subject, customer } => {
                let mut out = follow_prefix(subject);
                out.extend_from_slice(customer.as_bytes());
                out
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<IndexKey> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            b'f' => {
                let (len, rest) = rest.split_first_chunk::<2>()?;
                let len = usize::from(u16::from_be_bytes(*len));
                let subject = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
                let customer = std::str::from_utf8(rest.get(len..)?).ok()?.to_owned();
                Some(IndexKey::Follow { subject, customer })
            }
            _ => None,
        }
    }
}

/// A durable timer: the state at `key` of `partition` needs attention at event time `due`.
/// Timers order by partition, then due time, then key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub partition: Partition,
    pub due: i64,
    pub key: StateKey,
}

/// `[partition][due]` (without the key): scan bounds.
pub(crate) fn timer_prefix(partition: Partition, due: i64) -> Vec<u8> {
    scoped(partition, &ord_i64(due))
}

pub(crate) fn timer_key(t: &Timer) -> Vec<u8> {
    let mut out = timer_prefix(t.partition, t.due);
    out.extend_from_slice(&t.key.encode());
    out
}

pub(crate) fn parse_timer_key(raw: &[u8]) -> Option<Timer> {
    let (partition, rest) = unscope(raw)?;
    let (due, key) = rest.split_first_chunk::<8>()?;
    Some(Timer {
        partition,
        due: from_ord_i64(*due),
        key: StateKey::decode(key)?,
    })
}

pub(crate) fn outbox_key(p: Partition, seq: u64) -> Vec<u8> {
    scoped(p, &seq.to_be_bytes())
}

pub(crate) fn parse_outbox_key(raw: &[u8]) -> Option<(Partition, u64)> {
    let (p, rest) = unscope(raw)?;
    Some((p, u64::from_be_bytes(<[u8; 8]>::try_from(rest).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_kind_round_trips_and_partitions_sort_like_numbers() {
        for k in [
            StateKey::Customer("cust-1".into()),
            StateKey::Session([7; 16]),
            StateKey::Window(-5),
            StateKey::Merge {
                window: 1_700_000_000_000,
                source: 3,
            },
            StateKey::Progress(-1),
            StateKey::Salt,
        ] {
            assert_eq!(StateKey::decode(&k.encode()), Some(k));
        }
        for k in [
            MetaKey::Applied("clicks".into()),
            MetaKey::Watermark,
            MetaKey::Releases(2),
            MetaKey::ClosedThrough,
        ] {
            assert_eq!(MetaKey::decode(&k.encode()), Some(k));
        }
        let f = IndexKey::Follow {
            subject: "brickworks".into(),
            customer: "c-1".into(),
        };
        assert_eq!(IndexKey::decode(&f.encode()), Some(f));
        let keys: Vec<Vec<u8>> = [PROCESS, -1, 0, 1, 255, i32::MAX]
            .iter()
            .map(|p| scoped(*p, b"x"))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(unscope(&scoped(PROCESS, b"x")), Some((PROCESS, &b"x"[..])));
        let (lo, hi) = partition_range(70_000);
        assert!(scoped(70_000, &[0xff; 9]) < hi && scoped(70_000, b"") >= lo);
        assert!(scoped(70_001, b"") >= hi && scoped(69_999, &[0xff; 9]) < lo);
        let t = Timer {
            partition: 4,
            due: -3,
            key: StateKey::Session([1; 16]),
        };
        assert_eq!(parse_timer_key(&timer_key(&t)), Some(t));
        assert_eq!(parse_outbox_key(&outbox_key(9, 42)), Some((9, 42)));
    }
}
