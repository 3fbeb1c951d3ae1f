//! Stored customer state: postcard behind a one-byte format version, so a future layout can be
//! read side by side with this one. Version 3 added the recently applied event ids as the last
//! field; version 4 the session trail, open callbacks, product views and gifted products after
//! it. An older state reads as one with those empty: each is one zero byte in postcard (`None`,
//! or a list's length 0).

use tact_core::CustomerState;

const VERSION: u8 = 4;
const V3: u8 = 3;
const V2: u8 = 2;
/// The fields version 4 appended, empty: `trail` (None), `callbacks`, `product_views`, `gifted`.
const V4_FIELDS_EMPTY: [u8; 4] = [0; 4];

#[derive(Debug, thiserror::Error)]
pub enum StateCodecError {
    #[error("stored state has format version {0}; this tact reads version {VERSION}")]
    UnknownVersion(u8),
    #[error("stored state is empty")]
    Empty,
    #[error("stored state is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
}

pub fn encode_state(state: &CustomerState) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising plain data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(state).unwrap_or_default());
    out
}

pub fn decode_state(bytes: &[u8]) -> Result<CustomerState, StateCodecError> {
    match bytes.split_first() {
        None => Err(StateCodecError::Empty),
        Some((&VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&V3, rest)) => Ok(postcard::from_bytes(&[rest, &V4_FIELDS_EMPTY].concat())?),
        // Version 2 ends where version 3's last field, `recent_events`, begins: an empty list
        // is one zero byte (its length).
        Some((&V2, rest)) => Ok(postcard::from_bytes(
            &[rest, &[0], &V4_FIELDS_EMPTY].concat(),
        )?),
        Some((&other, _)) => Err(StateCodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tact_core::state::SeenEvent;
    use tact_core::Timestamp;

    #[test]
    fn state_round_trips_and_foreign_versions_are_refused() {
        let state = CustomerState {
            first_seen: Some(Timestamp(5)),
            visits: 3,
            follows: vec!["artist-1".into()],
            recent_events: vec![SeenEvent {
                digest: [1, 2, 3, 4, 5, 6, 7, 8],
                at: Timestamp(7),
            }],
            ..CustomerState::default()
        };
        let bytes = encode_state(&state);
        assert_eq!(decode_state(&bytes).unwrap(), state);
        // A state written before the trail, callbacks, product views and gifts (version 3): the
        // same bytes without those four fields; before event ids were remembered (version 2):
        // without the fifth-last too.
        let body = postcard::to_allocvec(&state).unwrap();
        let mut v3 = vec![3];
        v3.extend(&body[..body.len() - 4]);
        assert_eq!(decode_state(&v3).unwrap(), state);
        let mut without = state.clone();
        without.recent_events.clear();
        let mut v2 = vec![2];
        let body = postcard::to_allocvec(&without).unwrap();
        v2.extend(&body[..body.len() - 5]);
        assert_eq!(decode_state(&v2).unwrap(), without);
        // What version 4 added survives a round trip.
        let mut full = state.clone();
        full.gifted = vec!["kite".into()];
        full.callbacks = vec![tact_core::state::OpenCallback {
            decision_id: "d-1".into(),
            cause_event_id: "e-1".into(),
            product_id: None,
            requested_at: Timestamp(1),
            due_at: Timestamp(2),
            escalated: true,
        }];
        assert_eq!(decode_state(&encode_state(&full)).unwrap(), full);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(matches!(
            decode_state(&other),
            Err(StateCodecError::UnknownVersion(9))
        ));
        assert!(decode_state(&bytes[..bytes.len() / 2]).is_err());
    }
}
