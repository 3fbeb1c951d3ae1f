//! tact-core: the pure decision core.
//!
//! Owns the typed inputs (click events, profile commands), the per-customer state, the policy and
//! the decision logic. Everything here is a function of its arguments: event time comes from the
//! events, policy is passed in, and no function reads a clock, touches the network or the disk, or
//! keeps global state. That is the invariant the rest of tact relies on: replaying the same input
//! against the same state yields byte-identical decisions with the same ids, which is what makes
//! crash recovery safe and the golden tests meaningful.

pub mod catalog;
pub mod clock;
pub mod decision;
pub mod engine;
pub mod event;
pub mod faq;
pub mod gates;
pub mod id;
pub mod policy;
pub mod state;
pub mod time;

pub use catalog::{Catalog, Product};
pub use clock::PartitionClock;
pub use decision::{
    CallbackNews, Channel, Decision, DecisionKind, Gate, HelpContext, Reason, SearchTried,
    SuggestedAnswer, Suppressed,
};
pub use engine::{
    apply_command, apply_event, apply_release, apply_timer, callback_decision_id, callback_due,
    next_due, pending_timers, CommandEffect, Outcome, PendingTimer, Rules, TimerKind,
};
pub use event::{ClickEvent, CommandBody, EventKind, Item, ProfileCommand, Purpose, Release};
pub use faq::{FaqEntry, KnowledgeBase};
pub use policy::{ConsentRegime, Policy, PolicyError, Tier};
pub use state::CustomerState;
pub use time::Timestamp;
