//! tact-codec: every byte format tact reads or writes.
//!
//! Owns the shipped Avro schemas, input decoding (Avro in Confluent framing, single-object
//! encoding or as a plain datum, and JSON with the same field names) into validated core types,
//! output encoding of decisions, suppressed candidates and dead letters, and the state encoding.
//! Invariant: decoding never panics and never allocates more than the input could justify; every
//! failure is a [`DecodeError`] with an [`ErrorClass`] that says why, so the caller can
//! dead-letter the record and move on.

mod input;
mod output;
pub mod schema;
mod state;

pub use input::{
    decode_click, decode_command, decode_release, encode_click, encode_command, encode_release,
    DecodeError, ErrorClass, InputFormat,
};
pub use output::{
    decode_decision, decode_suppressed, sha256_hex, DeadLetter, DecodedDecision, DecodedSuppressed,
    Encoder, OutputFormat, Receipt, Stage, DEAD_LETTER_RESERVE, MAX_DEAD_LETTER_KEY,
    MIN_DEAD_LETTER_LIMIT,
};
pub use state::{decode_state, encode_state, StateCodecError};
