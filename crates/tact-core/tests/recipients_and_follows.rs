//! Gift mode, recipients and their birthday reminders, follows and new releases, as a customer
//! would see them: what gets recorded where, what is sent, when, and to whom.

use tact_core::event::PreferencesUpdate;
use tact_core::{
    apply_command, apply_event, apply_release, apply_timer, next_due, pending_timers, Catalog,
    Channel, ClickEvent, CommandBody, CustomerState, DecisionKind, EventKind, Item, Outcome,
    Product, ProfileCommand, Purpose, Release, Rules, TimerKind, Timestamp,
};

/// 2026-03-02 10:00 UTC.
const T0: i64 = 1_772_445_600_000;
const DAY: i64 = 86_400_000;

fn rules() -> Rules {
    let product = |id: &str, category: &str| Product {
        id: id.into(),
        category: category.into(),
        name: None,
        compatible_with: Vec::new(),
    };
    Rules {
        catalog: Catalog::new(vec![
            product("lego-1", "toys"),
            product("lego-2", "toys"),
            product("kite", "toys"),
            product("novel-1", "books"),
            product("novel-2", "books"),
        ])
        .expect("catalog"),
        ..Rules::default()
    }
}

fn cmd(n: u32, at: i64, body: CommandBody) -> ProfileCommand {
    ProfileCommand {
        command_id: format!("k{n}"),
        customer_id: "c1".into(),
        issued_at: Timestamp(at),
        body,
    }
}

fn consent(state: &mut CustomerState, purpose: Purpose, granted: bool, at: i64, rules: &Rules) {
    apply_command(
        state,
        &cmd(
            0,
            at,
            CommandBody::SetConsent {
                purpose,
                channel: None,
                granted,
                source: "settings".into(),
                expires_at: None,
            },
        ),
        rules,
    );
}

fn add_recipient(state: &mut CustomerState, at: i64, birthday: &str, rules: &Rules) {
    apply_command(
        state,
        &cmd(
            1,
            at,
            CommandBody::UpsertRecipient {
                recipient_id: "mia".into(),
                name: "Mia".into(),
                birthday: Some(birthday.into()),
                interests: vec!["toys".into()],
            },
        ),
        rules,
    );
}

fn gift_mode(state: &mut CustomerState, at: i64, rules: &Rules) {
    apply_command(
        state,
        &cmd(
            2,
            at,
            CommandBody::SetGiftMode {
                enabled: true,
                recipient_id: Some("mia".into()),
                until: Some(Timestamp(at + DAY)),
            },
        ),
        rules,
    );
}

fn view(state: &mut CustomerState, n: u32, at: i64, product: &str, cat: &str, rules: &Rules) {
    let mut ev = ClickEvent::new(
        &format!("e{n}"),
        "c1",
        "s1",
        Timestamp(at),
        EventKind::ProductView,
    );
    ev.product_id = Some(product.into());
    ev.category = Some(cat.into());
    apply_event(state, &ev, rules);
}

fn buy(state: &mut CustomerState, n: u32, at: i64, product: &str, rules: &Rules) {
    let mut ev = ClickEvent::new(
        &format!("e{n}"),
        "c1",
        "s1",
        Timestamp(at),
        EventKind::Purchase,
    );
    ev.items = vec![Item {
        product_id: product.into(),
        category: None,
        quantity: 1,
        unit_price_cents: 1999,
    }];
    apply_event(state, &ev, rules);
}

/// Runs every due timer up to `until`, as the runtime does, collecting what they produce.
fn run_timers(state: &mut CustomerState, until: i64, rules: &Rules) -> Outcome {
    let mut all = Outcome::default();
    while let Some(due) = next_due(state, &rules.policy).filter(|d| d.millis() <= until) {
        let out = apply_timer(state, "c1", due, rules);
        all.decisions.extend(out.decisions);
        all.suppressed.extend(out.suppressed);
        assert_ne!(
            next_due(state, &rules.policy),
            Some(due),
            "a fired timer must move on"
        );
    }
    all
}

#[test]
fn a_gift_bought_in_gift_mode_is_listed_under_the_recipient_and_not_the_buyer() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    add_recipient(&mut state, T0, "06-15", &rules);
    gift_mode(&mut state, T0 + 1000, &rules);
    view(&mut state, 1, T0 + 2000, "lego-1", "toys", &rules);
    buy(&mut state, 2, T0 + 3000, "lego-1", &rules);

    assert!(
        state.interests.is_empty(),
        "gift shopping fed the buyer: {:?}",
        state.interests
    );
    assert!(state.purchases.is_empty());
    let mia = &state.recipients[0];
    assert_eq!(mia.gifts.len(), 1);
    assert_eq!(mia.gifts[0].product_id, "lego-1");
    assert_eq!(mia.gifts[0].category.as_deref(), Some("toys"));
    assert_eq!(mia.gifts[0].event_id, "e2");
    assert_eq!(mia.viewed[0].category, "toys");
}

#[test]
fn the_checkout_gift_flag_keeps_one_purchase_out_of_the_buyers_profile() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    let mut ev = ClickEvent::new("e1", "c1", "s1", Timestamp(T0 + 1000), EventKind::Purchase);
    ev.gift = true;
    ev.items = vec![Item {
        product_id: "kite".into(),
        category: None,
        quantity: 1,
        unit_price_cents: 500,
    }];
    apply_event(&mut state, &ev, &rules);
    assert!(state.purchases.is_empty());
    assert!(state.interests.is_empty());
}

#[test]
fn a_birthday_reminder_goes_once_days_before_with_ideas_not_already_given() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    consent(&mut state, Purpose::Reminders, true, T0, &rules);
    // Birthday March 20; with 7 days' notice at 10:00 UTC the reminder is due March 13 10:00.
    add_recipient(&mut state, T0, "2019-03-20", &rules);
    gift_mode(&mut state, T0 + 1000, &rules);
    buy(&mut state, 1, T0 + 2000, "lego-1", &rules);

    let due = T0 + 11 * DAY;
    let timers = pending_timers(&state, &rules.policy);
    let reminder = timers
        .iter()
        .find(|t| t.kind == TimerKind::BirthdayReminder)
        .expect("a reminder is scheduled");
    assert_eq!(reminder.due, Timestamp(due));
    assert_eq!(reminder.about, "mia");

    let early = run_timers(&mut state, due - 1, &rules);
    assert!(!early
        .decisions
        .iter()
        .any(|d| d.kind == DecisionKind::GiftReminder));
    let out = run_timers(&mut state, due + 60 * DAY, &rules);
    let reminders: Vec<_> = out
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::GiftReminder)
        .collect();
    assert_eq!(reminders.len(), 1, "exactly one reminder: {out:?}");
    let r = reminders[0];
    assert_eq!(r.created_at, Timestamp(due));
    assert_eq!(r.channel, Channel::Email);
    assert_eq!(r.items, vec!["lego-2".to_owned(), "kite".to_owned()]);
    assert!(r.reasons[0]
        .detail
        .contains("Mia's birthday is on March 20"));
    // Next year's reminder is scheduled; this year's never comes again.
    let next = next_due(&state, &rules.policy).expect("next year");
    assert!(next.millis() > T0 + 300 * DAY, "{next:?}");
}

#[test]
fn no_birthday_reminder_without_consent_to_reminders() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    add_recipient(&mut state, T0, "03-20", &rules);
    let out = run_timers(&mut state, T0 + 30 * DAY, &rules);
    assert!(out.decisions.is_empty());
    assert_eq!(out.suppressed.len(), 1);
    assert_eq!(out.suppressed[0].kind, DecisionKind::GiftReminder);
    assert_eq!(out.suppressed[0].reason_code, "consent_missing");
}

#[test]
fn a_birthday_already_passed_this_year_is_reminded_next_year() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Reminders, true, T0, &rules);
    add_recipient(&mut state, T0, "01-10", &rules);
    let due = next_due(&state, &rules.policy).expect("scheduled");
    let when = chrono::DateTime::from_timestamp_millis(due.millis()).expect("time");
    assert_eq!(
        when.format("%Y-%m-%d %H:%M").to_string(),
        "2027-01-03 10:00"
    );
}

#[test]
fn a_new_release_reaches_followers_with_marketing_consent_only() {
    let rules = rules();
    let release = Release {
        release_id: "r1".into(),
        subject: "brickworks".into(),
        title: "Castle set".into(),
        product_ids: vec!["lego-2".into()],
        category: Some("toys".into()),
        released_at: Timestamp(T0 + DAY),
    };
    let follow = |state: &mut CustomerState, on: bool| {
        apply_command(
            state,
            &cmd(
                5,
                T0,
                CommandBody::Follow {
                    subject: "brickworks".into(),
                    follow: on,
                },
            ),
            &rules,
        );
    };

    let mut follower = CustomerState::default();
    follow(&mut follower, true);
    consent(&mut follower, Purpose::Marketing, true, T0, &rules);
    let out = apply_release(&mut follower, "c1", &release, &rules);
    assert_eq!(out.decisions.len(), 1);
    assert_eq!(out.decisions[0].kind, DecisionKind::NewRelease);
    assert_eq!(out.decisions[0].items, vec!["lego-2".to_owned()]);
    let again = apply_release(&mut follower.clone(), "c1", &release, &rules);
    assert_eq!(
        again.decisions[0].decision_id, out.decisions[0].decision_id,
        "a re-read release yields the same id"
    );
    let other = apply_release(&mut follower.clone(), "c2", &release, &rules);
    assert_ne!(
        other.decisions[0].decision_id, out.decisions[0].decision_id,
        "each follower's decision has an id of its own"
    );

    let mut no_consent = CustomerState::default();
    follow(&mut no_consent, true);
    let out = apply_release(&mut no_consent, "c1", &release, &rules);
    assert!(out.decisions.is_empty());
    assert_eq!(out.suppressed[0].reason_code, "consent_missing");

    let mut unfollowed = CustomerState::default();
    consent(&mut unfollowed, Purpose::Marketing, true, T0, &rules);
    follow(&mut unfollowed, true);
    follow(&mut unfollowed, false);
    let out = apply_release(&mut unfollowed, "c1", &release, &rules);
    assert_eq!(
        out,
        Outcome::default(),
        "someone who unfollowed hears nothing"
    );
}

#[test]
fn inferred_interests_expire_after_the_retention_period() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    view(&mut state, 1, T0, "novel-1", "books", &rules);
    assert_eq!(state.interests[0].evidence, vec!["e1".to_owned()]);
    let keep = i64::from(rules.policy.inferred_retention_days) * DAY;
    run_timers(&mut state, T0 + keep - 1, &rules);
    assert_eq!(state.interests.len(), 1);
    run_timers(&mut state, T0 + keep, &rules);
    assert!(state.interests.is_empty());
}

#[test]
fn making_a_category_private_removes_it_from_recipients_too() {
    let rules = rules();
    let mut state = CustomerState::default();
    consent(&mut state, Purpose::Personalization, true, T0, &rules);
    add_recipient(&mut state, T0, "06-15", &rules);
    gift_mode(&mut state, T0 + 1000, &rules);
    buy(&mut state, 1, T0 + 2000, "lego-1", &rules);
    apply_command(
        &mut state,
        &cmd(
            9,
            T0 + 3000,
            CommandBody::SetPreferences(PreferencesUpdate {
                private_categories: vec!["toys".into()],
                ..PreferencesUpdate::default()
            }),
        ),
        &rules,
    );
    assert!(!state.categories().contains(&"toys"));
    assert!(state.recipients[0].gifts.is_empty());
}
