//! An outgoing record as kept in the store's outbox until the broker acknowledges it.

/// Topic, key and payload of one record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl OutboxRecord {
    /// `[u16 topic len][topic][u32 key len][key][payload]`, all lengths big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(6 + self.topic.len() + self.key.len() + self.payload.len());
        out.extend_from_slice(&(self.topic.len() as u16).to_be_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<OutboxRecord> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let topic = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
        let rest = &rest[len..];
        let (klen, rest) = rest.split_first_chunk::<4>()?;
        let klen = usize::try_from(u32::from_be_bytes(*klen)).ok()?;
        let key = rest.get(..klen)?.to_vec();
        Some(OutboxRecord {
            topic,
            key,
            payload: rest[klen..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_records_round_trip_and_garbage_is_refused() {
        let r = OutboxRecord {
            topic: "decisions".into(),
            key: b"cust-1".to_vec(),
            payload: vec![0xC3, 1, 2, 3],
        };
        assert_eq!(OutboxRecord::decode(&r.encode()), Some(r));
        assert_eq!(OutboxRecord::decode(&[0, 9, b'a']), None);
        assert_eq!(OutboxRecord::decode(&[]), None);
    }
}
