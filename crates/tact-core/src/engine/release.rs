//! New releases: a brand or artist a customer follows announces something new.

use super::memory::{forget_without_consent, unwanted};
use super::{Outcome, Rules};
use crate::decision::{DecisionKind, Reason};
use crate::event::Release;
use crate::gates::{self, Cause};
use crate::gates::{Candidate, Evidence};
use crate::state::CustomerState;

/// Proposes a `new_release` decision to one customer. Followers only: the caller finds them
/// through its follow index, and this checks again against the state, so a stale index entry
/// can never reach someone who unfollowed. The decision id depends on the release and the
/// customer only, so a re-read release yields the same id.
pub fn apply_release(
    state: &mut CustomerState,
    customer_id: &str,
    release: &Release,
    rules: &Rules,
) -> Outcome {
    let mut out = Outcome::default();
    if !state.follows.contains(&release.subject) {
        return out;
    }
    let policy = &rules.policy;
    let now = release.released_at;
    forget_without_consent(state, policy, now);
    let items: Vec<String> = release
        .product_ids
        .iter()
        .filter(|p| !unwanted(state, rules, p))
        .take(policy.new_release.max_items as usize)
        .cloned()
        .collect();
    let mut categories: Vec<String> = release.category.iter().cloned().collect();
    for p in &release.product_ids {
        if let Some(c) = rules.catalog.get(p).map(|p| &p.category) {
            if !categories.contains(c) {
                categories.push(c.clone());
            }
        }
    }
    // A release in a sensitive category is not announced per person: the sensitivity gate
    // stops it, and the audit record says so.
    let candidate = Candidate {
        kind: DecisionKind::NewRelease,
        channel: policy.new_release.channel,
        subject: format!("release/{}", release.release_id),
        personalized: true,
        items,
        reasons: vec![Reason::new(
            "followed_subject",
            format!(
                "new from {}, which you follow: {}",
                release.subject, release.title
            ),
        )],
        evidence: Evidence::Stated,
        categories,
        in_session: false,
        context: None,
        answers: Vec::new(),
        due_at: None,
    };
    gates::emit(
        state,
        candidate,
        &Cause {
            customer_id,
            session_id: None,
            event_id: &release.release_id,
            now,
        },
        policy,
        &mut out,
    );
    out
}
