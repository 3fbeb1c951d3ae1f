//! A customer's stored state with the input it has absorbed.
//!
//! Each customer's value carries the offset of the last click and command of its partition
//! applied to it (and of each catalog partition's release announced to it). A restore may bring
//! back a batch's state without the batch's applied offsets (a crash between the two reaching the
//! changelog); the input after the restored offsets is then applied again, and these versions
//! make that a no-op for every customer who already has it. Nothing is applied twice.

use tact_codec::{decode_state, encode_state};
use tact_core::CustomerState;

const MAGIC: u8 = b'E';
const VERSION: u8 = 1;

/// What a customer's state has absorbed, per input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// Last clickstream offset applied (-1: none).
    pub click: i64,
    /// Last profile-command offset applied (-1: none).
    pub command: i64,
    /// Per catalog partition, the last release offset announced to this customer.
    pub catalog: Vec<(i32, i64)>,
}

impl Versions {
    pub fn new() -> Versions {
        Versions {
            click: -1,
            command: -1,
            catalog: Vec::new(),
        }
    }

    pub fn catalog(&self, partition: i32) -> i64 {
        self.catalog
            .iter()
            .find(|(p, _)| *p == partition)
            .map_or(-1, |(_, o)| *o)
    }

    pub fn set_catalog(&mut self, partition: i32, offset: i64) {
        match self.catalog.iter_mut().find(|(p, _)| *p == partition) {
            Some(slot) => slot.1 = slot.1.max(offset),
            None => {
                self.catalog.push((partition, offset));
                self.catalog.sort_unstable();
            }
        }
    }
}

/// `[E][1][click i64][command i64][n u8][(partition i32, offset i64) × n][state]`.
pub fn encode(versions: &Versions, state: &CustomerState) -> Vec<u8> {
    let body = encode_state(state);
    let n = versions.catalog.len().min(usize::from(u8::MAX));
    let mut out = Vec::with_capacity(19 + 12 * n + body.len());
    out.push(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&versions.click.to_be_bytes());
    out.extend_from_slice(&versions.command.to_be_bytes());
    out.push(n as u8);
    for (p, o) in versions.catalog.iter().take(n) {
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(&o.to_be_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// The versions and state of a stored value.
pub fn decode(bytes: &[u8]) -> Result<(Versions, CustomerState), String> {
    let corrupt = || "the stored state's envelope is truncated".to_owned();
    let (&[magic, version], rest) = bytes.split_first_chunk::<2>().ok_or_else(corrupt)?;
    if magic != MAGIC || version != VERSION {
        return Err(format!(
            "the stored state has an unknown envelope ({magic:#04x}, version {version})"
        ));
    }
    let (click, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (command, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (n, mut rest) = rest.split_first().ok_or_else(corrupt)?;
    let mut catalog = Vec::with_capacity(usize::from(*n));
    for _ in 0..*n {
        let (p, r) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (o, r) = r.split_first_chunk::<8>().ok_or_else(corrupt)?;
        catalog.push((i32::from_be_bytes(*p), i64::from_be_bytes(*o)));
        rest = r;
    }
    let state = decode_state(rest).map_err(|e| e.to_string())?;
    Ok((
        Versions {
            click: i64::from_be_bytes(*click),
            command: i64::from_be_bytes(*command),
            catalog,
        },
        state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_state_round_trips_with_its_versions_and_garbage_is_an_error() {
        let mut v = Versions::new();
        v.click = 41;
        v.command = 7;
        v.set_catalog(2, 9);
        v.set_catalog(0, 3);
        v.set_catalog(2, 5);
        assert_eq!(v.catalog(2), 9, "a version never goes back");
        let state = CustomerState {
            visits: 3,
            ..CustomerState::default()
        };
        let (back_v, back_s) = decode(&encode(&v, &state)).expect("decodes");
        assert_eq!((back_v, back_s), (v, state));
        assert!(decode(b"").is_err());
        assert!(decode(b"E\x01\x00").is_err());
        assert!(decode(b"X\x01").is_err());
    }
}
