//! The decision policy: sensitivity taxonomy, detector thresholds, caps, back-off, quiet hours,
//! consent regime and holdout. Validated once at start and stamped (by version) on every decision,
//! so an audit can tell which rules produced it.

use crate::decision::{Channel, DecisionKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// How much of a category tact may remember about a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Used for nothing beyond aggregate counts; leaves no per-person trace, not even in state.
    NeverRemember,
    /// Usable for in-session help; forgotten when the session ends; never for outbound contact.
    SessionOnly,
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitivityPolicy {
    pub default_tier: Tier,
    /// category -> tier. Categories not listed get `default_tier`.
    pub categories: BTreeMap<String, Tier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendationPolicy {
    /// Decayed views of one category needed before it is evidence.
    pub min_category_views: u32,
    pub max_items: u32,
    /// Inferred interest halves with every this many days without a view.
    pub interest_half_life_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProactiveHelpPolicy {
    pub channel: Channel,
    /// Never offered before this many events in the session (no help for a short browse).
    pub min_session_events: u32,
    /// FAQ/help pages read deeply (scroll or dwell) without a resolving click.
    pub faq_min_pages: u32,
    pub faq_min_scroll: f32,
    pub faq_min_dwell_ms: u64,
    /// Searches with at most `search_few_results` results.
    pub search_min_failures: u32,
    pub search_few_results: u32,
    /// A search within this long of a failed one is a quick reformulation and counts double.
    pub search_reformulation_ms: i64,
    /// Returns to a product already viewed this session (A -> B -> A), within one category, each
    /// look lasting at least `pingpong_min_dwell_ms`. Reading many different products is
    /// careful reading, not struggle: only going back counts.
    pub pingpong_min_returns: u32,
    pub pingpong_min_dwell_ms: u64,
    /// Returns to cart or checkout pages without a purchase.
    pub checkout_min_returns: u32,
    /// Knowledge-base answers a help decision carries at most (0: none).
    pub max_suggested_answers: u32,
}

/// "Call me": the promise of an answer within `answer_within_minutes` of business time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackPolicy {
    pub answer_within_minutes: u32,
    pub business_hours: BusinessHours,
}

/// When the contact centre answers: `open` to `close` local time on `days`, in the shop's zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessHours {
    /// IANA name of the shop's time zone.
    pub time_zone: String,
    /// "HH:MM", before `close` (no overnight shifts).
    pub open: String,
    pub close: String,
    /// "mon" ... "sun".
    pub days: Vec<String>,
}

/// Gifts take their browsing with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GiftsPolicy {
    /// A gift bought takes back the interest its views added to the buyer in the same session
    /// and in the last this many days (0: the same session only).
    pub take_back_recent_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessoryPolicy {
    pub max_items: u32,
    /// Purchases older than this are no longer a reason.
    pub max_purchase_age_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundPolicy {
    pub channel: Channel,
    /// A cart left this long after its last addition, without a purchase, is abandoned.
    pub abandoned_cart_after_minutes: u32,
}

/// Birthday reminders for the recipients a customer keeps (`gift_reminder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemindersPolicy {
    pub channel: Channel,
    /// The reminder goes this many days before the birthday...
    pub days_before: u32,
    /// ...at this local time ("HH:MM") in the customer's time zone.
    pub send_at: String,
    /// Gift ideas from the recipient's interests, never something already given to them.
    pub max_items: u32,
}

/// `new_release` decisions to followers of a brand or artist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewReleasePolicy {
    pub channel: Channel,
    pub max_items: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Session,
    Day,
    Week,
}

/// At most `max` decisions matching `kind` and `channel` (either may be omitted) per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    #[serde(default)]
    pub kind: Option<DecisionKind>,
    #[serde(default)]
    pub channel: Option<Channel>,
    pub max: u32,
    pub per: Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FatiguePolicy {
    pub caps: Vec<Cap>,
    /// After the first dismissal of a kind, stay silent about it this long...
    pub backoff_base_hours: u32,
    /// ...multiplied by this for each further dismissal...
    pub backoff_factor: f64,
    /// ...up to this.
    pub backoff_max_days: u32,
    /// After a dismissal (of any suggestion), proactive interruptions of every kind pause for
    /// the rest of the session's this many minutes, doubling with each further dismissal...
    pub interruption_backoff_minutes: u32,
    /// ...and stop for the rest of the session at this many dismissals (0: never).
    pub interruption_max_dismissals: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuietHoursPolicy {
    /// Local time "HH:MM"; the window may wrap midnight.
    pub start: String,
    pub end: String,
    pub channels: Vec<Channel>,
    /// IANA name used when the customer's time zone is unknown.
    pub default_time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoldoutPolicy {
    /// Share of customers (0.0-0.5) who get no personalized decisions, for measurement.
    pub share: f64,
    /// Changing the salt draws a new holdout group.
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Stamped on every decision and suppression.
    pub version: String,
    pub consent_regime: ConsentRegime,
    /// A gap this long starts a new session (and makes the customer "returning").
    pub session_gap_minutes: u32,
    /// How long an on-site decision stays valid after its cause.
    pub decision_ttl_minutes: u32,
    /// Bounds per-customer state.
    pub max_tracked_categories: u32,
    pub max_recent_products: u32,
    pub max_purchases: u32,
    /// A click event whose id the customer sent within this many minutes (of event time) is a
    /// retry: applied once. The customer's last 8 event ids are remembered whatever their age,
    /// so a retry arriving after the first event of their next visit is still one. 0: no
    /// de-duplication.
    pub duplicate_window_minutes: u32,
    /// At most this many recent event ids are remembered per customer.
    pub max_remembered_events: u32,
    /// Inferred interests (and purchases, and what was looked at for a recipient) not renewed
    /// for this long are forgotten.
    pub inferred_retention_days: u32,
    pub sensitivity: SensitivityPolicy,
    pub recommendation: RecommendationPolicy,
    pub proactive_help: ProactiveHelpPolicy,
    pub compatible_accessory: AccessoryPolicy,
    pub outbound: OutboundPolicy,
    pub reminders: RemindersPolicy,
    pub new_release: NewReleasePolicy,
    pub fatigue: FatiguePolicy,
    pub quiet_hours: QuietHoursPolicy,
    pub holdout: HoldoutPolicy,
    pub callback: CallbackPolicy,
    pub gifts: GiftsPolicy,
}

impl Default for SensitivityPolicy {
    fn default() -> Self {
        SensitivityPolicy {
            default_tier: Tier::Normal,
            categories: BTreeMap::new(),
        }
    }
}

impl Default for RecommendationPolicy {
    fn default() -> Self {
        RecommendationPolicy {
            min_category_views: 3,
            max_items: 5,
            interest_half_life_days: 30,
        }
    }
}

impl Default for ProactiveHelpPolicy {
    fn default() -> Self {
        ProactiveHelpPolicy {
            channel: Channel::Chat,
            min_session_events: 3,
            faq_min_pages: 2,
            faq_min_scroll: 0.7,
            faq_min_dwell_ms: 30_000,
            search_min_failures: 3,
            search_few_results: 2,
            search_reformulation_ms: 60_000,
            pingpong_min_returns: 2,
            pingpong_min_dwell_ms: 20_000,
            checkout_min_returns: 3,
            max_suggested_answers: 3,
        }
    }
}

impl Default for AccessoryPolicy {
    fn default() -> Self {
        AccessoryPolicy {
            max_items: 3,
            max_purchase_age_days: 365,
        }
    }
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            channel: Channel::Email,
            abandoned_cart_after_minutes: 120,
        }
    }
}

impl Default for RemindersPolicy {
    fn default() -> Self {
        RemindersPolicy {
            channel: Channel::Email,
            days_before: 7,
            send_at: "10:00".into(),
            max_items: 3,
        }
    }
}

impl Default for NewReleasePolicy {
    fn default() -> Self {
        NewReleasePolicy {
            channel: Channel::Email,
            max_items: 3,
        }
    }
}

impl Default for FatiguePolicy {
    fn default() -> Self {
        FatiguePolicy {
            caps: vec![
                Cap {
                    kind: Some(DecisionKind::ProactiveHelp),
                    channel: None,
                    max: 1,
                    per: Window::Session,
                },
                Cap {
                    kind: Some(DecisionKind::Recommendation),
                    channel: None,
                    max: 5,
                    per: Window::Day,
                },
                Cap {
                    kind: None,
                    channel: Some(Channel::Email),
                    max: 2,
                    per: Window::Week,
                },
                Cap {
                    kind: None,
                    channel: Some(Channel::Push),
                    max: 2,
                    per: Window::Week,
                },
            ],
            backoff_base_hours: 24,
            backoff_factor: 2.0,
            backoff_max_days: 30,
            interruption_backoff_minutes: 15,
            interruption_max_dismissals: 2,
        }
    }
}

impl Default for CallbackPolicy {
    fn default() -> Self {
        CallbackPolicy {
            answer_within_minutes: 60,
            business_hours: BusinessHours::default(),
        }
    }
}

impl Default for BusinessHours {
    fn default() -> Self {
        BusinessHours {
            time_zone: "UTC".into(),
            open: "09:00".into(),
            close: "18:00".into(),
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Default for GiftsPolicy {
    fn default() -> Self {
        GiftsPolicy {
            take_back_recent_days: 7,
        }
    }
}

impl Default for QuietHoursPolicy {
    fn default() -> Self {
        QuietHoursPolicy {
            start: "21:00".into(),
            end: "08:00".into(),
            channels: vec![Channel::Email, Channel::Push],
            default_time_zone: "UTC".into(),
        }
    }
}

impl Default for HoldoutPolicy {
    fn default() -> Self {
        HoldoutPolicy {
            share: 0.0,
            salt: "tact".into(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: "default-1".to_owned(),
            consent_regime: ConsentRegime::OptIn,
            session_gap_minutes: 30,
            decision_ttl_minutes: 30,
            max_tracked_categories: 32,
            max_recent_products: 8,
            max_purchases: 50,
            duplicate_window_minutes: 60,
            max_remembered_events: 64,
            inferred_retention_days: 365,
            sensitivity: SensitivityPolicy::default(),
            recommendation: RecommendationPolicy::default(),
            proactive_help: ProactiveHelpPolicy::default(),
            compatible_accessory: AccessoryPolicy::default(),
            outbound: OutboundPolicy::default(),
            reminders: RemindersPolicy::default(),
            new_release: NewReleasePolicy::default(),
            fatigue: FatiguePolicy::default(),
            quiet_hours: QuietHoursPolicy::default(),
            holdout: HoldoutPolicy::default(),
            callback: CallbackPolicy::default(),
            gifts: GiftsPolicy::default(),
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

/// Minutes after midnight of an "HH:MM" string.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

/// A weekday written `mon` ... `sun` (or spelled out, any case).
pub fn parse_weekday(s: &str) -> Option<chrono::Weekday> {
    s.parse().ok()
}

/// True for IANA time zone names tact can compute local time in.
pub fn valid_time_zone(name: &str) -> bool {
    name.parse::<chrono_tz::Tz>().is_ok()
}

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
        check(
            self.duplicate_window_minutes <= 7 * 24 * 60,
            "duplicate_window_minutes",
            "must be at most 10080 (a week)",
        );
        check(
            (1..=1000).contains(&self.max_remembered_events),
            "max_remembered_events",
            "must be between 1 and 1000",
        );
        check(
            (1..=1000).contains(&self.max_purchases),
            "max_purchases",
            "must be between 1 and 1000",
        );
        let r = &self.recommendation;
        check(
            r.min_category_views >= 1,
            "recommendation.min_category_views",
            "must be at least 1",
        );
        check(
            (1..=50).contains(&r.max_items),
            "recommendation.max_items",
            "must be between 1 and 50",
        );
        check(
            r.interest_half_life_days >= 1,
            "recommendation.interest_half_life_days",
            "must be at least 1",
        );
        let h = &self.proactive_help;
        check(
            matches!(h.channel, Channel::Chat | Channel::OnSite),
            "proactive_help.channel",
            "must be chat or on_site: help is offered in the session, never by outbound contact",
        );
        check(
            h.faq_min_pages >= 1,
            "proactive_help.faq_min_pages",
            "must be at least 1",
        );
        check(
            (0.0..=1.0).contains(&h.faq_min_scroll),
            "proactive_help.faq_min_scroll",
            "must be between 0.0 and 1.0",
        );
        check(
            h.search_min_failures >= 1,
            "proactive_help.search_min_failures",
            "must be at least 1",
        );
        check(
            h.pingpong_min_returns >= 1,
            "proactive_help.pingpong_min_returns",
            "must be at least 1",
        );
        check(
            h.checkout_min_returns >= 2,
            "proactive_help.checkout_min_returns",
            "must be at least 2",
        );
        check(
            (1..=20).contains(&self.compatible_accessory.max_items),
            "compatible_accessory.max_items",
            "must be between 1 and 20",
        );
        check(
            self.outbound.channel.is_outbound(),
            "outbound.channel",
            "must be email or push",
        );
        check(
            (10..=30 * 24 * 60).contains(&self.outbound.abandoned_cart_after_minutes),
            "outbound.abandoned_cart_after_minutes",
            "must be between 10 and 43200",
        );
        check(
            (1..=3650).contains(&self.inferred_retention_days),
            "inferred_retention_days",
            "must be between 1 and 3650",
        );
        let rem = &self.reminders;
        check(
            rem.channel.is_outbound(),
            "reminders.channel",
            "must be email or push: a reminder reaches the customer outside a visit",
        );
        check(
            rem.days_before <= 60,
            "reminders.days_before",
            "must be between 0 and 60",
        );
        let send_at = parse_hhmm(&rem.send_at);
        check(
            send_at.is_some(),
            "reminders.send_at",
            "must be a local time like 10:00",
        );
        let q = &self.quiet_hours;
        if let (Some(at), Some(start), Some(end)) =
            (send_at, parse_hhmm(&q.start), parse_hhmm(&q.end))
        {
            let quiet = if start <= end {
                (start..end).contains(&at)
            } else {
                at >= start || at < end
            };
            check(
                !(quiet && q.channels.contains(&rem.channel)),
                "reminders.send_at",
                "falls in quiet hours for the reminder channel, so no reminder would ever go",
            );
        }
        check(
            (1..=20).contains(&rem.max_items),
            "reminders.max_items",
            "must be between 1 and 20",
        );
        check(
            self.new_release.channel.is_outbound(),
            "new_release.channel",
            "must be email or push",
        );
        check(
            (1..=20).contains(&self.new_release.max_items),
            "new_release.max_items",
            "must be between 1 and 20",
        );
        let f = &self.fatigue;
        check(
            f.caps.iter().all(|c| c.max >= 1),
            "fatigue.caps",
            "every cap needs max >= 1 (turn a kind off with a customer switch instead)",
        );
        check(
            f.backoff_base_hours >= 1,
            "fatigue.backoff_base_hours",
            "must be at least 1",
        );
        check(
            (1.0..=10.0).contains(&f.backoff_factor),
            "fatigue.backoff_factor",
            "must be between 1.0 and 10.0",
        );
        check(
            f.backoff_max_days >= 1,
            "fatigue.backoff_max_days",
            "must be at least 1",
        );
        let q = &self.quiet_hours;
        check(
            parse_hhmm(&q.start).is_some(),
            "quiet_hours.start",
            "must be a local time like 21:00",
        );
        check(
            parse_hhmm(&q.end).is_some(),
            "quiet_hours.end",
            "must be a local time like 08:00",
        );
        check(
            valid_time_zone(&q.default_time_zone),
            "quiet_hours.default_time_zone",
            "must be an IANA time zone such as Europe/Berlin or UTC",
        );
        check(
            (0.0..=0.5).contains(&self.holdout.share),
            "holdout.share",
            "must be between 0.0 and 0.5",
        );
        check(
            h.max_suggested_answers <= 10,
            "proactive_help.max_suggested_answers",
            "must be between 0 and 10",
        );
        check(
            f.interruption_backoff_minutes <= 24 * 60,
            "fatigue.interruption_backoff_minutes",
            "must be between 0 and 1440",
        );
        let cb = &self.callback;
        check(
            (1..=7 * 24 * 60).contains(&cb.answer_within_minutes),
            "callback.answer_within_minutes",
            "must be between 1 and 10080",
        );
        let bh = &cb.business_hours;
        check(
            valid_time_zone(&bh.time_zone),
            "callback.business_hours.time_zone",
            "must be an IANA time zone such as Europe/Berlin or UTC",
        );
        let (open, close) = (parse_hhmm(&bh.open), parse_hhmm(&bh.close));
        check(
            open.is_some(),
            "callback.business_hours.open",
            "must be a local time like 09:00",
        );
        check(
            close.is_some(),
            "callback.business_hours.close",
            "must be a local time like 18:00",
        );
        check(
            !matches!((open, close), (Some(o), Some(c)) if o >= c),
            "callback.business_hours.close",
            "must be after open (overnight hours are not supported)",
        );
        check(
            !bh.days.is_empty() && bh.days.iter().all(|d| parse_weekday(d).is_some()),
            "callback.business_hours.days",
            "must list at least one of mon, tue, wed, thu, fri, sat, sun",
        );
        check(
            self.gifts.take_back_recent_days <= 365,
            "gifts.take_back_recent_days",
            "must be between 0 and 365",
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

    pub fn tier(&self, category: &str) -> Tier {
        self.sensitivity
            .categories
            .get(category)
            .copied()
            .unwrap_or(self.sensitivity.default_tier)
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
        let mut policy = Policy {
            version: " ".into(),
            session_gap_minutes: 0,
            ..Policy::default()
        };
        policy.quiet_hours.default_time_zone = "Mars/Olympus".into();
        policy.outbound.channel = Channel::OnSite;
        let keys: Vec<_> = policy
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "version",
                "session_gap_minutes",
                "outbound.channel",
                "quiet_hours.default_time_zone"
            ]
        );
    }

    #[test]
    fn unlisted_categories_get_the_default_tier() {
        let mut policy = Policy::default();
        policy
            .sensitivity
            .categories
            .insert("health".into(), Tier::NeverRemember);
        assert_eq!(policy.tier("health"), Tier::NeverRemember);
        assert_eq!(policy.tier("shoes"), Tier::Normal);
        assert_eq!(parse_hhmm("21:30"), Some(21 * 60 + 30));
        assert_eq!(parse_hhmm("25:00"), None);
    }
}
