//! Stored customer state: postcard behind a one-byte format version, so a future layout can be
//! read side by side with this one.

use tact_core::CustomerState;

const VERSION: u8 = 2;

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
        Some((&other, _)) => Err(StateCodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tact_core::Timestamp;

    #[test]
    fn state_round_trips_and_foreign_versions_are_refused() {
        let state = CustomerState {
            first_seen: Some(Timestamp(5)),
            visits: 3,
            follows: vec!["artist-1".into()],
            ..CustomerState::default()
        };
        let bytes = encode_state(&state);
        assert_eq!(decode_state(&bytes).unwrap(), state);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(matches!(
            decode_state(&other),
            Err(StateCodecError::UnknownVersion(9))
        ));
        assert!(decode_state(&bytes[..bytes.len() / 2]).is_err());
    }
}
