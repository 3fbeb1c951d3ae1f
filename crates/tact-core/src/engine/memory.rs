//! What tact learns and forgets about a customer: evidence from events (interests, purchases,
//! the cart, what was looked at for a recipient), reactions to suggestions, consent records, and
//! forgetting when consent lapses or a session ends.
//!
//! Invariant: nothing inferred outlives the personalization consent it was learned under, and
//! nothing from a `never_remember` or private category is recorded (the caller filters those).

use super::{granted, timers, Rules, DAY_MS, MAX_EVIDENCE};
use crate::decision::{Channel, DecisionKind};
use crate::event::{ClickEvent, EventKind, Purpose};
use crate::policy::{Policy, Tier};
use crate::state::{
    Backoff, Cart, CartItem, CategoryInterest, ConsentRecord, CustomerState, Gift, GiftMode,
    ProductView, Purchase,
};
use crate::time::Timestamp;

/// Learned memory lives only as long as personalization consent does: when consent lapses (an
/// expiry, a withdrawal), what was inferred under it goes.
pub(super) fn forget_without_consent(state: &mut CustomerState, policy: &Policy, now: Timestamp) {
    // An expired consent is no consent: drop the record (the regime decides from here on).
    state
        .consents
        .retain(|r| r.expires_at.is_none_or(|t| t > now));
    timers::expire_learned(state, policy, now);
    let learned_gifts = state
        .recipients
        .iter()
        .any(|r| !r.gifts.is_empty() || !r.viewed.is_empty());
    let learned_views = !state.gifted.is_empty() || state.product_views.iter().any(|v| v.learned);
    if (!state.interests.is_empty()
        || !state.purchases.is_empty()
        || learned_gifts
        || learned_views)
        && !granted(
            state,
            Purpose::Personalization,
            Channel::OnSite,
            policy,
            now,
        )
    {
        forget_learned(state);
    }
}

/// Drops what was inferred from behaviour (not what the customer stated).
pub(super) fn forget_learned(state: &mut CustomerState) {
    state.interests.clear();
    state.purchases.clear();
    state.gifted.clear();
    state.product_views.retain(|v| !v.learned);
    for r in &mut state.recipients {
        r.gifts.clear();
        r.viewed.clear();
    }
}

/// True when the customer should never be offered `product`: already bought, or filed (in the
/// catalog) under a category they excluded or made private.
pub(super) fn unwanted(state: &CustomerState, rules: &Rules, product: &str) -> bool {
    let prefs = &state.preferences;
    state.purchases.iter().any(|p| p.product_id == product)
        || state.gifted.iter().any(|g| g == product)
        || rules.catalog.get(product).is_some_and(|p| {
            prefs.excluded_categories.contains(&p.category)
                || prefs.private_categories.contains(&p.category)
        })
}

/// The customer's reactions to earlier suggestions: back off after dismissals, reset on a click,
/// relax after engagement.
pub(super) fn feedback(state: &mut CustomerState, ev: &ClickEvent, policy: &Policy) {
    let kind = ev
        .suggestion_kind
        .as_deref()
        .and_then(DecisionKind::from_name);
    match (&ev.kind, kind) {
        (EventKind::SuggestionDismissed, Some(kind)) => {
            let f = &policy.fatigue;
            let idx = match state.backoff.iter().position(|b| b.kind == kind) {
                Some(i) => i,
                None => {
                    state.backoff.push(Backoff {
                        kind,
                        dismissals: 0,
                        until: ev.event_time,
                    });
                    state.backoff.len() - 1
                }
            };
            let b = &mut state.backoff[idx];
            b.dismissals = b.dismissals.saturating_add(1);
            let hours = f64::from(f.backoff_base_hours)
                * f.backoff_factor.powi(b.dismissals.saturating_sub(1) as i32);
            let capped = hours.min(f64::from(f.backoff_max_days) * 24.0);
            b.until = Timestamp(ev.event_time.millis() + (capped * 3_600_000.0) as i64);
        }
        (EventKind::SuggestionClicked, Some(kind)) => state.backoff.retain(|b| b.kind != kind),
        (EventKind::AddToCart | EventKind::Purchase | EventKind::ChatOpened, _) => {
            // Engagement: each counts as one dismissal forgiven (the window stays as it was).
            for b in &mut state.backoff {
                b.dismissals = b.dismissals.saturating_sub(1);
            }
            state
                .backoff
                .retain(|b| b.dismissals > 0 || ev.event_time < b.until);
        }
        _ => {}
    }
}

pub(super) fn gift_mode_active(state: &CustomerState, session_id: &str, now: Timestamp) -> bool {
    match &state.gift_mode {
        Some(GiftMode {
            until: Some(until), ..
        }) => now < *until,
        Some(GiftMode {
            session_id: Some(s),
            ..
        }) => s == session_id,
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn bump(
    list: &mut Vec<CategoryInterest>,
    category: &str,
    product: Option<&str>,
    event_id: &str,
    now: Timestamp,
    policy: &Policy,
    decay: bool,
) {
    let idx = match list.iter().position(|c| c.category == category) {
        Some(i) => i,
        None => {
            if list.len() >= policy.max_tracked_categories as usize {
                // Forget the category seen least recently: state stays bounded.
                if let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].last_viewed_at) {
                    list.swap_remove(oldest);
                }
            }
            list.push(CategoryInterest {
                category: category.to_owned(),
                views: 0,
                last_viewed_at: now,
                recent_products: Vec::new(),
                evidence: Vec::new(),
            });
            list.len() - 1
        }
    };
    let entry = &mut list[idx];
    if decay {
        // Time decay: interest halves every half-life without a view.
        let half_life = f64::from(policy.recommendation.interest_half_life_days) * DAY_MS as f64;
        let age = now.since(entry.last_viewed_at).max(0) as f64;
        if age > 0.0 {
            entry.views = (f64::from(entry.views) * 0.5f64.powf(age / half_life)).round() as u32;
        }
    }
    entry.views = entry.views.saturating_add(1);
    entry.last_viewed_at = entry.last_viewed_at.max(now);
    if let Some(product) = product {
        entry.recent_products.retain(|p| p != product);
        entry.recent_products.insert(0, product.to_owned());
        entry
            .recent_products
            .truncate(policy.max_recent_products as usize);
    }
    if !entry.evidence.iter().any(|e| e == event_id) {
        entry.evidence.insert(0, event_id.to_owned());
        entry.evidence.truncate(MAX_EVIDENCE);
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn record_evidence(
    state: &mut CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
    categories: &[String],
    personalized: bool,
    gift: bool,
    recipient: Option<&str>,
    session_only: bool,
) {
    let policy = &rules.policy;
    let now = ev.event_time;
    let product = ev
        .product_id
        .as_deref()
        .or_else(|| ev.items.first().map(|i| i.product_id.as_str()));
    let feeds = matches!(
        ev.kind,
        EventKind::CategoryView
            | EventKind::ProductView
            | EventKind::AddToCart
            | EventKind::Purchase
    );
    // Shopping for someone else says nothing about the buyer's own taste: it is kept (with
    // consent) against the recipient being shopped for, if one is named.
    if feeds && gift && personalized && !session_only {
        if let (Some(category), Some(r)) = (
            categories.first(),
            recipient.and_then(|id| state.recipients.iter_mut().find(|r| r.recipient_id == id)),
        ) {
            bump(
                &mut r.viewed,
                category,
                product,
                &ev.event_id,
                now,
                policy,
                false,
            );
            if ev.kind == EventKind::Purchase {
                for item in &ev.items {
                    let category = item
                        .category
                        .clone()
                        .or_else(|| ev.category.clone())
                        .or_else(|| {
                            rules
                                .catalog
                                .get(&item.product_id)
                                .map(|p| p.category.clone())
                        });
                    r.gifts.retain(|g| g.product_id != item.product_id);
                    r.gifts.push(Gift {
                        product_id: item.product_id.clone(),
                        category,
                        at: now,
                        event_id: ev.event_id.clone(),
                    });
                }
                let max = policy.max_purchases as usize;
                if r.gifts.len() > max {
                    let excess = r.gifts.len() - max;
                    r.gifts.drain(..excess);
                }
            }
        }
    }
    if feeds && !gift {
        if let Some(category) = categories.first() {
            if let Some(session) = state.session.as_mut() {
                bump(
                    &mut session.category_views,
                    category,
                    product,
                    &ev.event_id,
                    now,
                    policy,
                    false,
                );
            }
            if personalized && !session_only {
                bump(
                    &mut state.interests,
                    category,
                    product,
                    &ev.event_id,
                    now,
                    policy,
                    true,
                );
            }
            if let (Some(product), false, EventKind::ProductView | EventKind::AddToCart) =
                (product, session_only, &ev.kind)
            {
                remember_view(state, ev, product, category, personalized, policy);
            }
        }
    }
    match ev.kind {
        EventKind::AddToCart
            if !session_only && (ev.product_id.is_some() || !ev.items.is_empty()) =>
        {
            let cap = policy.max_purchases as usize;
            let cart = state.cart.get_or_insert_with(|| Cart {
                items: Vec::new(),
                last_added_at: now,
                last_added_event: ev.event_id.clone(),
                nudged: false,
                defer_until: None,
            });
            let added = ev
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.category.as_deref()))
                .chain(ev.product_id.as_deref().map(|p| (p, None)));
            for (id, category) in added {
                let category = category
                    .or(ev.category.as_deref())
                    .or_else(|| rules.catalog.get(id).map(|p| p.category.as_str()))
                    .map(str::to_owned);
                cart.items.retain(|x| x.product_id != id);
                cart.items.push(CartItem {
                    product_id: id.to_owned(),
                    category,
                });
            }
            // Bounded: the most recent additions are the ones worth a reminder.
            if cart.items.len() > cap {
                let excess = cart.items.len() - cap;
                cart.items.drain(..excess);
            }
            cart.last_added_at = now;
            cart.last_added_event = ev.event_id.clone();
            cart.nudged = false;
            cart.defer_until = None;
        }
        EventKind::Purchase if gift => {
            state.cart = None;
            if let Some(session) = state.session.as_mut() {
                session.purchased = true;
            }
            take_back_gift(state, ev, rules, personalized, recipient);
        }
        EventKind::Purchase => {
            state.cart = None;
            if let Some(session) = state.session.as_mut() {
                session.purchased = true;
            }
            if personalized && !gift && !session_only {
                for item in &ev.items {
                    let category = item.category.clone().or_else(|| {
                        rules
                            .catalog
                            .get(&item.product_id)
                            .map(|p| p.category.clone())
                    });
                    state.purchases.retain(|p| p.product_id != item.product_id);
                    state.purchases.push(Purchase {
                        product_id: item.product_id.clone(),
                        category,
                        at: now,
                    });
                }
                let max = policy.max_purchases as usize;
                if state.purchases.len() > max {
                    let excess = state.purchases.len() - max;
                    state.purchases.drain(..excess);
                }
            }
        }
        _ => {}
    }
}

/// Drops the session and everything that lived only in it.
pub(super) fn end_session(state: &mut CustomerState) {
    state.trail = None;
    if let Some(ended) = state.session.take() {
        // Views that fed only this session's evidence go with it.
        state.product_views.retain(|v| v.learned);
        if let Some(gift) = &state.gift_mode {
            if gift.until.is_none() && gift.session_id.as_deref() == Some(ended.id.as_str()) {
                state.gift_mode = None;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn record_consent(
    state: &mut CustomerState,
    purpose: Purpose,
    channel: Option<Channel>,
    granted: bool,
    source: &str,
    at: Timestamp,
    expires_at: Option<Timestamp>,
) {
    state
        .consents
        .retain(|r| !(r.purpose == purpose && r.channel == channel));
    state.consents.push(ConsentRecord {
        purpose,
        channel,
        granted,
        source: source.to_owned(),
        at,
        expires_at,
    });
}

/// Views of one product remembered for a later gift purchase to take back (bounded).
const MAX_PRODUCT_VIEWS: usize = 32;
/// Products remembered as bought for someone else (bounded).
const MAX_GIFTED: usize = 50;

/// Remembers a view that fed the buyer's evidence, so that buying the product as a gift later
/// can take it back.
fn remember_view(
    state: &mut CustomerState,
    ev: &ClickEvent,
    product: &str,
    category: &str,
    learned: bool,
    policy: &Policy,
) {
    let window = i64::from(policy.gifts.take_back_recent_days) * DAY_MS;
    let now = ev.event_time;
    state
        .product_views
        .retain(|v| v.session_id == ev.session_id || (v.learned && now.since(v.at) <= window));
    state.product_views.push(ProductView {
        product_id: product.to_owned(),
        category: category.to_owned(),
        event_id: ev.event_id.clone(),
        session_id: ev.session_id.clone(),
        at: now,
        learned,
    });
    if state.product_views.len() > MAX_PRODUCT_VIEWS {
        let excess = state.product_views.len() - MAX_PRODUCT_VIEWS;
        state.product_views.drain(..excess);
    }
}

/// Takes one view's evidence out of a list of interests.
fn untake(list: &mut Vec<CategoryInterest>, view: &ProductView) {
    if let Some(i) = list.iter().position(|c| c.category == view.category) {
        let c = &mut list[i];
        c.views = c.views.saturating_sub(1);
        c.evidence.retain(|e| e != &view.event_id);
        c.recent_products.retain(|p| p != &view.product_id);
        if c.views == 0 {
            list.swap_remove(i);
        }
    }
}

/// A gift says nothing about the buyer's own taste: the views of its items in this session (and
/// in the last `gifts.take_back_recent_days`) are taken back from the buyer's interests, moved
/// to the named recipient if there is one, and the items are never offered to the buyer as
/// their own interest again.
fn take_back_gift(
    state: &mut CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
    personalized: bool,
    recipient: Option<&str>,
) {
    let policy = &rules.policy;
    let window = i64::from(policy.gifts.take_back_recent_days) * DAY_MS;
    let now = ev.event_time;
    let products: Vec<(&str, Option<&str>)> = ev
        .items
        .iter()
        .map(|i| (i.product_id.as_str(), i.category.as_deref()))
        .chain(ev.product_id.as_deref().map(|p| (p, None)))
        .collect();
    for (product, category) in products {
        // Only a normal-tier product is remembered as gifted (every category the event or the
        // catalog files it under); a sensitive one leaves no trace.
        let filed = rules.catalog.get(product).map(|p| p.category.as_str());
        let rememberable = [category, ev.category.as_deref(), filed]
            .into_iter()
            .flatten()
            .all(|c| policy.tier(c) == Tier::Normal);
        let (taken, kept): (Vec<ProductView>, Vec<ProductView>) =
            std::mem::take(&mut state.product_views)
                .into_iter()
                .partition(|v| {
                    v.product_id == product
                        && (v.session_id == ev.session_id || now.since(v.at) <= window)
                });
        state.product_views = kept;
        for v in &taken {
            if v.learned {
                untake(&mut state.interests, v);
            }
            if let Some(session) = state.session.as_mut().filter(|s| s.id == v.session_id) {
                untake(&mut session.category_views, v);
            }
            if let (true, Some(r)) = (
                personalized,
                recipient.and_then(|id| state.recipients.iter_mut().find(|r| r.recipient_id == id)),
            ) {
                bump(
                    &mut r.viewed,
                    &v.category,
                    Some(product),
                    &v.event_id,
                    v.at,
                    policy,
                    false,
                );
            }
        }
        // Never the buyer's own interest again, whatever still lists it.
        for c in &mut state.interests {
            c.recent_products.retain(|p| p != product);
        }
        if let Some(session) = state.session.as_mut() {
            for c in &mut session.category_views {
                c.recent_products.retain(|p| p != product);
            }
        }
        if personalized && rememberable && !state.gifted.iter().any(|g| g == product) {
            state.gifted.push(product.to_owned());
            if state.gifted.len() > MAX_GIFTED {
                state.gifted.remove(0);
            }
        }
    }
}
