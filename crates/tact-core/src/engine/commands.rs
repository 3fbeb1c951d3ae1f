//! Profile commands: what the customer says about themselves (consent, preferences, gift mode,
//! recipients, follows, erasure). Stated beats inferred, and the last command applied wins.

use super::memory::{forget_learned, forget_without_consent, record_consent};
use super::{CommandEffect, Rules};
use crate::decision::{Channel, DecisionKind};
use crate::event::{CommandBody, ProfileCommand, Purpose};
use crate::state::{CustomerState, GiftMode, Recipient};

/// Folds one profile command into `state`. The last command applied wins.
pub fn apply_command(
    state: &mut CustomerState,
    cmd: &ProfileCommand,
    rules: &Rules,
) -> CommandEffect {
    let policy = &rules.policy;
    forget_without_consent(state, policy, cmd.issued_at);
    match &cmd.body {
        CommandBody::SetConsent {
            purpose,
            channel,
            granted,
            source,
            expires_at,
        } => {
            record_consent(
                state,
                *purpose,
                *channel,
                *granted,
                source,
                cmd.issued_at,
                *expires_at,
            );
            // Withdrawing personalization consent also forgets what was inferred under it.
            if !super::granted(
                state,
                Purpose::Personalization,
                Channel::OnSite,
                policy,
                cmd.issued_at,
            ) {
                forget_learned(state);
            }
        }
        CommandBody::SetPreferences(update) => {
            let prefs = &mut state.preferences;
            prefs.stated_interests = update.interests.clone();
            prefs.survey_answers = update.survey_answers.clone();
            prefs.excluded_categories = update.excluded_categories.clone();
            prefs.private_categories = update.private_categories.clone();
            if update.suggestions_enabled.is_some() {
                prefs.suggestions_enabled = update.suggestions_enabled;
            }
            prefs.disabled_kinds = update
                .disabled_kinds
                .iter()
                .filter_map(|k| DecisionKind::from_name(k))
                .collect();
            prefs.disabled_channels = update.disabled_channels.clone();
            if update.time_zone.is_some() {
                prefs.time_zone = update.time_zone.clone();
            }
            // Existing traces of a now-private category are deleted, not just hidden.
            let private = prefs.private_categories.clone();
            let is_private = |c: &str| private.iter().any(|p| p == c);
            // A product the catalog files under a private category goes wherever it was seen.
            let filed_private = |id: &String| {
                rules
                    .catalog
                    .get(id)
                    .is_some_and(|p| is_private(&p.category))
            };
            state.interests.retain(|c| !is_private(&c.category));
            state
                .product_views
                .retain(|v| !is_private(&v.category) && !filed_private(&v.product_id));
            state.gifted.retain(|g| !filed_private(g));
            if !private.is_empty() {
                // The trail does not say which category a page belonged to: it goes whole.
                if let Some(t) = state.trail.as_mut() {
                    t.pages.clear();
                    t.searches.clear();
                }
            }
            for c in &mut state.interests {
                c.recent_products.retain(|p| !filed_private(p));
            }
            for r in &mut state.recipients {
                r.viewed.retain(|c| !is_private(&c.category));
                for c in &mut r.viewed {
                    c.recent_products.retain(|p| !filed_private(p));
                }
                r.gifts.retain(|g| {
                    !g.category.as_deref().is_some_and(is_private) && !filed_private(&g.product_id)
                });
            }
            state.purchases.retain(|p| {
                !p.category.as_deref().is_some_and(is_private) && !filed_private(&p.product_id)
            });
            if let Some(cart) = state.cart.as_mut() {
                cart.items.retain(|i| {
                    let filed = rules
                        .catalog
                        .get(&i.product_id)
                        .map(|p| p.category.as_str());
                    !i.category.as_deref().is_some_and(is_private) && !filed.is_some_and(is_private)
                });
                if cart.items.is_empty() {
                    state.cart = None;
                }
            }
            if let Some(session) = state.session.as_mut() {
                session.category_views.retain(|c| !is_private(&c.category));
                for c in &mut session.category_views {
                    c.recent_products.retain(|p| !filed_private(p));
                }
                session.proposed.retain(|(_, s)| !is_private(s));
                if session.pingpong.as_ref().is_some_and(|p| {
                    is_private(&p.category)
                        || filed_private(&p.last_product)
                        || p.products.iter().any(filed_private)
                }) {
                    session.pingpong = None;
                }
            }
        }
        CommandBody::SetGiftMode {
            enabled,
            recipient_id,
            until,
        } => {
            state.gift_mode = enabled.then(|| GiftMode {
                recipient_id: recipient_id.clone(),
                until: *until,
                session_id: state.session.as_ref().map(|s| s.id.clone()),
            });
        }
        CommandBody::UpsertRecipient {
            recipient_id,
            name,
            birthday,
            interests,
        } => {
            // An update keeps what was bought for them; a new birthday starts reminders afresh.
            match state
                .recipients
                .iter_mut()
                .find(|r| &r.recipient_id == recipient_id)
            {
                Some(r) => {
                    if &r.birthday != birthday {
                        r.birthday = birthday.clone();
                        r.added_at = cmd.issued_at;
                        r.reminded_year = None;
                    }
                    r.name = name.clone();
                    r.interests = interests.clone();
                }
                None => state.recipients.push(Recipient {
                    recipient_id: recipient_id.clone(),
                    name: name.clone(),
                    birthday: birthday.clone(),
                    interests: interests.clone(),
                    added_at: cmd.issued_at,
                    gifts: Vec::new(),
                    viewed: Vec::new(),
                    reminded_year: None,
                }),
            }
        }
        CommandBody::RemoveRecipient { recipient_id } => {
            state.recipients.retain(|r| &r.recipient_id != recipient_id)
        }
        CommandBody::Follow { subject, follow } => {
            state.follows.retain(|s| s != subject);
            if *follow {
                state.follows.push(subject.clone());
            }
        }
        CommandBody::Erase { .. } => {
            *state = CustomerState::default();
            return CommandEffect::Erase;
        }
    }
    CommandEffect::Updated
}
