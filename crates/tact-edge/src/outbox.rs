//! Outgoing records as kept in the store's outbox until the broker acknowledges their batch.

use tact_kafka::Kind;

/// Topic, partition (when the producer must not choose one), key and value of one record. A
/// `None` value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// A smaller value sent instead when the producer or the broker refuses `value` as too large
    /// (a dead letter without the original record's bytes). A record that has one is never
    /// fatal: if the smaller form is refused too, the record is dropped and counted.
    pub fallback: Option<Vec<u8>>,
}

impl OutRecord {
    /// A record for `topic` whose partition follows from its key.
    pub fn keyed(topic: &str, key: Vec<u8>, value: Vec<u8>) -> OutRecord {
        OutRecord {
            topic: topic.to_owned(),
            partition: None,
            key,
            value: Some(value),
            fallback: None,
        }
    }

    /// The same record with a smaller form to send if this one is refused as too large.
    pub fn or_smaller(mut self, fallback: Vec<u8>) -> OutRecord {
        self.fallback = Some(fallback);
        self
    }
}

/// The outbox records in memory until the broker acknowledges them, and how many bytes they
/// hold (what bounds the memory of a process whose broker stalls).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    records: std::collections::HashMap<u64, (tact_store::Partition, OutboxEntry)>,
    bytes: usize,
}

fn size(e: &OutboxEntry) -> usize {
    let r = &e.record;
    r.topic.len()
        + r.key.len()
        + r.value.as_ref().map_or(0, Vec::len)
        + r.fallback.as_ref().map_or(0, Vec::len)
}

impl InFlight {
    pub fn insert(&mut self, seq: u64, p: tact_store::Partition, entry: OutboxEntry) {
        self.bytes += size(&entry);
        if let Some((_, old)) = self.records.insert(seq, (p, entry)) {
            self.bytes -= size(&old);
        }
    }

    pub fn remove(&mut self, seq: u64) -> Option<(tact_store::Partition, OutboxEntry)> {
        let gone = self.records.remove(&seq)?;
        self.bytes -= size(&gone.1);
        Some(gone)
    }

    pub fn get(&self, seq: u64) -> Option<&(tact_store::Partition, OutboxEntry)> {
        self.records.get(&seq)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.records.contains_key(&seq)
    }

    /// Replaces a record's value with its smaller form; returns (partition, topic) if it had one.
    pub fn shrink(&mut self, seq: u64) -> Option<(tact_store::Partition, String, bool)> {
        let (p, entry) = self.records.get_mut(&seq)?;
        let before = size(entry);
        let smaller = entry.record.fallback.take();
        let had = smaller.is_some();
        if let Some(s) = smaller {
            entry.record.value = Some(s);
        }
        self.bytes = self.bytes - before + size(entry);
        Some((*p, entry.record.topic.clone(), had))
    }

    pub fn forget_partition(&mut self, p: tact_store::Partition) {
        let mut freed = 0;
        self.records.retain(|_, (q, e)| {
            let keep = *q != p;
            if !keep {
                freed += size(e);
            }
            keep
        });
        self.bytes -= freed;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// An outbox entry: the record and the relay stage it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub kind: Kind,
    pub record: OutRecord,
}

/// Version 2 added the fallback; version 1 entries (without it) are still read.
const VERSION: u8 = 2;

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Output => 0,
        Kind::ChangelogData => 1,
        Kind::ChangelogMeta => 2,
    }
}

impl OutboxEntry {
    /// `[2][kind][partition i32, -1: any][u16 topic len][topic][u32 key len][key]`
    /// `[u32 fallback len + 1, 0: none][fallback][0|1 value][value]`.
    pub fn encode(&self) -> Vec<u8> {
        let r = &self.record;
        let value = r.value.as_deref().unwrap_or_default();
        let fallback = r.fallback.as_deref().unwrap_or_default();
        let mut out =
            Vec::with_capacity(18 + r.topic.len() + r.key.len() + fallback.len() + value.len());
        out.push(VERSION);
        out.push(kind_byte(self.kind));
        out.extend_from_slice(&r.partition.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&(r.topic.len() as u16).to_be_bytes());
        out.extend_from_slice(r.topic.as_bytes());
        out.extend_from_slice(&(r.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.key);
        let flen = r.fallback.as_ref().map_or(0, |f| f.len() as u32 + 1);
        out.extend_from_slice(&flen.to_be_bytes());
        out.extend_from_slice(fallback);
        out.push(u8::from(r.value.is_some()));
        out.extend_from_slice(value);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<OutboxEntry> {
        let (&[version, kind], rest) = bytes.split_first_chunk::<2>()?;
        if version != VERSION && version != 1 {
            return None;
        }
        let kind = match kind {
            0 => Kind::Output,
            1 => Kind::ChangelogData,
            2 => Kind::ChangelogMeta,
            _ => return None,
        };
        let (partition, rest) = rest.split_first_chunk::<4>()?;
        let partition = i32::from_be_bytes(*partition);
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let topic = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
        let rest = &rest[len..];
        let (klen, rest) = rest.split_first_chunk::<4>()?;
        let klen = usize::try_from(u32::from_be_bytes(*klen)).ok()?;
        let key = rest.get(..klen)?.to_vec();
        let mut rest = rest.get(klen..)?;
        let mut fallback = None;
        if version >= 2 {
            let (flen, after) = rest.split_first_chunk::<4>()?;
            let flen = usize::try_from(u32::from_be_bytes(*flen)).ok()?;
            rest = after;
            if flen > 0 {
                fallback = Some(rest.get(..flen - 1)?.to_vec());
                rest = &rest[flen - 1..];
            }
        }
        let (has_value, value) = rest.split_first()?;
        Some(OutboxEntry {
            kind,
            record: OutRecord {
                topic,
                partition: (partition >= 0).then_some(partition),
                key,
                value: (*has_value == 1).then(|| value.to_vec()),
                fallback,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_entries_round_trip_tombstones_included_and_garbage_is_refused() {
        for entry in [
            OutboxEntry {
                kind: Kind::Output,
                record: OutRecord::keyed("decisions", b"cust-1".to_vec(), vec![0xC3, 1, 2]),
            },
            OutboxEntry {
                kind: Kind::Output,
                record: OutRecord::keyed("dead", b"k".to_vec(), vec![7; 40]).or_smaller(vec![]),
            },
            OutboxEntry {
                kind: Kind::Output,
                record: OutRecord::keyed("dead", vec![], vec![7; 40]).or_smaller(vec![1, 2]),
            },
            OutboxEntry {
                kind: Kind::ChangelogData,
                record: OutRecord {
                    topic: "tact-changelog".into(),
                    partition: Some(4),
                    key: b"scust".to_vec(),
                    value: None,
                    fallback: None,
                },
            },
            OutboxEntry {
                kind: Kind::ChangelogMeta,
                record: OutRecord {
                    topic: "c".into(),
                    partition: Some(0),
                    key: vec![],
                    value: Some(vec![]),
                    fallback: None,
                },
            },
        ] {
            assert_eq!(OutboxEntry::decode(&entry.encode()), Some(entry));
        }
        // An entry written before fallbacks existed.
        let v1 = [
            &[1u8, 0][..],
            &(-1i32).to_be_bytes(),
            &[0, 1, b't'],
            &[0, 0, 0, 1, b'k'],
            &[1, 9],
        ]
        .concat();
        assert_eq!(
            OutboxEntry::decode(&v1),
            Some(OutboxEntry {
                kind: Kind::Output,
                record: OutRecord::keyed("t", b"k".to_vec(), vec![9]),
            })
        );
        assert_eq!(OutboxEntry::decode(&[1, 0, 0]), None);
        assert_eq!(OutboxEntry::decode(&[]), None);
        assert_eq!(OutboxEntry::decode(&[9; 30]), None);
    }
}
