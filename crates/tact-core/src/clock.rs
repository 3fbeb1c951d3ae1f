//! A partition's event time, which fires the timers of customers who are quiet (a session that
//! ended, an abandoned cart, an inferred interest to forget). It moves only as far as several
//! distinct customers agree: the `quorum`-th latest of the latest event times of the customers
//! seen most recently. One customer's clock, however wrong (an event stamped 2150, a device a
//! day ahead), never moves time for anyone else; their own timers follow their own events.
//! Deterministic on replay: it depends on the input alone, and it is stored with the partition.
//! Customers are told apart by a 16-bit bucket of their id's digest, which no one can be
//! recognised by (tens of thousands of customers share each), so the partition's metadata keeps
//! nothing of a person past their erasure; two customers sharing a bucket count as one, which
//! only makes time move a little later.

use crate::id::digest64;

/// Distinct customers whose latest event time is remembered per partition.
const TRACKED: usize = 32;
const VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionClock {
    /// Never moves back.
    time: i64,
    /// (customer bucket, their latest event time), most recently seen last.
    recent: Vec<([u8; 2], i64)>,
}

impl Default for PartitionClock {
    fn default() -> Self {
        PartitionClock {
            time: i64::MIN,
            recent: Vec::new(),
        }
    }
}

impl PartitionClock {
    /// The partition's event time (`i64::MIN` before `quorum` customers were seen).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// Notes an event of `customer` at `at`; returns whether the partition's time moved.
    pub fn observe(&mut self, customer: &str, at: i64, quorum: usize) -> bool {
        self.observe_digest(digest64(customer), at, quorum)
    }

    /// Moves the time to `t` if it is later (a source trusted by itself: the wall clock of an
    /// idle input).
    pub fn advance_to(&mut self, t: i64) -> bool {
        let moved = t > self.time;
        self.time = self.time.max(t);
        moved
    }

    /// [`PartitionClock::observe`] of a source already known by a digest (a session).
    pub fn observe_digest(&mut self, digest: [u8; 8], at: i64, quorum: usize) -> bool {
        // Every bit of the digest folded in (FNV's high bits alone barely differ for short ids).
        let h = u64::from_be_bytes(digest);
        let digest = ((h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16).to_be_bytes();
        let latest = match self.recent.iter().position(|(d, _)| *d == digest) {
            Some(i) => self.recent.remove(i).1.max(at),
            None => at,
        };
        self.recent.push((digest, latest));
        if self.recent.len() > TRACKED {
            self.recent.remove(0);
        }
        let quorum = quorum.clamp(1, TRACKED);
        if self.recent.len() < quorum {
            return false;
        }
        let mut times: Vec<i64> = self.recent.iter().map(|(_, t)| *t).collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let agreed = times[quorum - 1];
        if agreed > self.time {
            self.time = agreed;
            true
        } else {
            false
        }
    }

    /// `[2][time i64][n u8][(bucket u16, latest i64) × n]`; a bare 8-byte time (written before
    /// the clock remembered customers) still reads.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + 10 * self.recent.len());
        out.push(VERSION);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.push(self.recent.len() as u8);
        for (d, t) in &self.recent {
            out.extend_from_slice(d);
            out.extend_from_slice(&t.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<PartitionClock> {
        if let Ok(old) = <[u8; 8]>::try_from(bytes) {
            return Some(PartitionClock {
                time: i64::from_be_bytes(old),
                recent: Vec::new(),
            });
        }
        let (&VERSION, rest) = bytes.split_first()? else {
            return None;
        };
        let (time, rest) = rest.split_first_chunk::<8>()?;
        let (&n, mut rest) = rest.split_first()?;
        let mut recent = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let (d, r) = rest.split_first_chunk::<2>()?;
            let (t, r) = r.split_first_chunk::<8>()?;
            recent.push((*d, i64::from_be_bytes(*t)));
            rest = r;
        }
        rest.is_empty().then_some(PartitionClock {
            time: i64::from_be_bytes(*time),
            recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn one_customer_far_ahead_does_not_move_the_partitions_time() {
        let mut c = PartitionClock::default();
        assert!(
            !c.observe("a", 10 * H, 2),
            "one customer alone agrees with no one"
        );
        assert!(c.observe("b", 11 * H, 2));
        assert_eq!(c.time(), 10 * H);
        // An event stamped a century ahead: time goes no further than where two customers
        // agree (b's 11 h: b and the forger have both reached it).
        c.observe("forger", 1_000_000 * H, 2);
        assert_eq!(c.time(), 11 * H);
        // The same forger again and again: still one customer.
        c.observe("forger", 1_000_001 * H, 2);
        assert_eq!(c.time(), 11 * H);
        // Others move on: time follows them.
        c.observe("a", 12 * H, 2);
        assert_eq!(c.time(), 12 * H);
        c.observe("b", 13 * H, 2);
        assert_eq!(c.time(), 13 * H);
    }

    #[test]
    fn the_time_never_moves_back_and_a_late_event_changes_nothing() {
        let mut c = PartitionClock::default();
        c.observe("a", 10 * H, 2);
        c.observe("b", 10 * H, 2);
        assert!(!c.observe("c", H, 2));
        assert_eq!(c.time(), 10 * H);
    }

    #[test]
    fn the_clock_round_trips_and_an_old_bare_time_still_reads() {
        let mut c = PartitionClock::default();
        for (i, who) in ["a", "b", "c"].iter().enumerate() {
            c.observe(who, i as i64 * H, 2);
        }
        assert_eq!(PartitionClock::decode(&c.encode()), Some(c.clone()));
        let old = PartitionClock::decode(&(5 * H).to_be_bytes()).expect("old");
        assert_eq!(old.time(), 5 * H);
        assert_eq!(PartitionClock::decode(&[9, 9]), None);
        // Only the most recent customers are remembered.
        for i in 0..100 {
            c.observe(&format!("x{i}"), 20 * H, 2);
        }
        assert_eq!(c.recent.len(), TRACKED);
    }
}
