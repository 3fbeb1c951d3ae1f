//! The decision policy: thresholds and rules, validated once at start and stamped (by version) on
//! every decision so an audit can tell which rules produced it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How missing consent is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentRegime {
    /// GDPR-style: nothing is allowed until the customer grants it. Missing consent denies.
    OptIn,
    /// CCPA-style: allowed until the customer objects. Marketing still needs an explicit grant.
    OptOut,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Stamped on every decision and suppression.
    pub version: String,
    pub consent_regime: ConsentRegime,
    /// A gap in a customer's activity at least this long starts a new session (and makes the
    /// customer "returning").
    pub session_gap_minutes: u32,
    /// Views of one category needed before it is evidence for a recommendation.
    pub recommendation_min_category_views: u32,
    /// At most this many items in one recommendation.
    pub recommendation_max_items: u32,
    /// How long an on-site decision stays valid after its cause.
    pub decision_ttl_minutes: u32,
    /// Bounds per-customer state: least recently viewed categories are forgotten beyond this.
    pub max_tracked_categories: u32,
    /// Bounds per-customer state: recent products remembered per category.
    pub max_recent_products: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: "default-1".to_owned(),
            consent_regime: ConsentRegime::OptIn,
            session_gap_minutes: 30,
            recommendation_min_category_views: 3,
            recommendation_max_items: 5,
            decision_ttl_minutes: 30,
            max_tracked_categories: 32,
            max_recent_products: 8,
        }
    }
}

/// A policy that cannot be used, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub key: &'static str,
    pub problem: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy.{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for PolicyError {}

impl Policy {
    /// Checks every rule; returns all problems, not just the first, so one edit fixes a file.
    pub fn validate(&self) -> Result<(), Vec<PolicyError>> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &'static str, problem: &str| {
            if !ok {
                problems.push(PolicyError {
                    key,
                    problem: problem.to_owned(),
                });
            }
        };
        check(
            !self.version.trim().is_empty(),
            "version",
            "must not be empty: it is stamped on every decision",
        );
        check(
            (1..=24 * 60).contains(&self.session_gap_minutes),
            "session_gap_minutes",
            "must be between 1 and 1440",
        );
        check(
            self.recommendation_min_category_views >= 1,
            "recommendation_min_category_views",
            "must be at least 1",
        );
        check(
            (1..=50).contains(&self.recommendation_max_items),
            "recommendation_max_items",
            "must be between 1 and 50",
        );
        check(
            (1..=7 * 24 * 60).contains(&self.decision_ttl_minutes),
            "decision_ttl_minutes",
            "must be between 1 and 10080",
        );
        check(
            (1..=1000).contains(&self.max_tracked_categories),
            "max_tracked_categories",
            "must be between 1 and 1000",
        );
        check(
            (1..=100).contains(&self.max_recent_products),
            "max_recent_products",
            "must be between 1 and 100",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn session_gap_ms(&self) -> i64 {
        i64::from(self.session_gap_minutes) * 60_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let policy = Policy {
            version: " ".into(),
            session_gap_minutes: 0,
            recommendation_max_items: 0,
            ..Policy::default()
        };
        let keys: Vec<_> = policy
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            ["version", "session_gap_minutes", "recommendation_max_items"]
        );
    }
}
