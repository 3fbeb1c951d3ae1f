//! Properties of customer control over any interleaving of events and commands: the last command
//! wins, and after an erase nothing of the earlier profile comes back.

use proptest::prelude::*;
use tact_core::event::PreferencesUpdate;
use tact_core::{
    apply_command, apply_event, ClickEvent, CommandBody, CustomerState, EventKind, ProfileCommand,
    Purpose, Rules, Timestamp,
};

const T0: i64 = 1_772_445_600_000;
const CATS: [&str; 3] = ["shoes", "books", "toys"];

#[derive(Debug, Clone)]
enum Step {
    View(usize, u8),
    Consent(bool),
    Exclude(Vec<usize>),
    Suggestions(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3, 0u8..4).prop_map(|(c, p)| Step::View(c, p)),
        any::<bool>().prop_map(Step::Consent),
        proptest::collection::vec(0usize..3, 0..3).prop_map(Step::Exclude),
        any::<bool>().prop_map(Step::Suggestions),
    ]
}

fn cmd(i: usize, body: CommandBody) -> ProfileCommand {
    ProfileCommand {
        command_id: format!("k{i}"),
        customer_id: "c".into(),
        issued_at: Timestamp(T0 + i as i64 * 60_000),
        body,
    }
}

fn run(state: &mut CustomerState, steps: &[Step], offset: usize, rules: &Rules) {
    for (n, s) in steps.iter().enumerate() {
        let i = offset + n;
        let at = Timestamp(T0 + i as i64 * 60_000);
        match s {
            Step::View(c, p) => {
                let mut ev =
                    ClickEvent::new(&format!("e{i}"), "c", "s", at, EventKind::ProductView);
                ev.category = Some(CATS[*c].into());
                ev.product_id = Some(format!("{}-{p}", CATS[*c]));
                apply_event(state, &ev, rules);
            }
            Step::Consent(granted) => {
                apply_command(
                    state,
                    &cmd(
                        i,
                        CommandBody::SetConsent {
                            purpose: Purpose::Personalization,
                            channel: None,
                            granted: *granted,
                            source: "settings".into(),
                            expires_at: None,
                        },
                    ),
                    rules,
                );
            }
            Step::Exclude(cs) => {
                let update = PreferencesUpdate {
                    excluded_categories: cs.iter().map(|c| CATS[*c].to_owned()).collect(),
                    ..PreferencesUpdate::default()
                };
                apply_command(state, &cmd(i, CommandBody::SetPreferences(update)), rules);
            }
            Step::Suggestions(on) => {
                let update = PreferencesUpdate {
                    suggestions_enabled: Some(*on),
                    ..PreferencesUpdate::default()
                };
                apply_command(state, &cmd(i, CommandBody::SetPreferences(update)), rules);
            }
        }
    }
}

proptest! {
    /// Whatever events come in between, the consent, exclusions and suggestion switch in force
    /// are those of the last command that set them.
    #[test]
    fn the_last_command_wins(steps in proptest::collection::vec(step(), 1..40)) {
        let rules = Rules::default();
        let mut state = CustomerState::default();
        run(&mut state, &steps, 0, &rules);
        let last_consent = steps.iter().rev().find_map(|s| match s { Step::Consent(g) => Some(*g), _ => None });
        let record = state.consents.iter().find(|r| r.purpose == Purpose::Personalization && r.channel.is_none());
        prop_assert_eq!(record.map(|r| r.granted), last_consent);
        let last_excluded = steps.iter().rev().find_map(|s| match s {
            Step::Exclude(cs) => Some(cs.iter().map(|c| CATS[*c].to_owned()).collect::<Vec<_>>()),
            // Every preferences update replaces the exclusion list (an empty one clears it).
            Step::Suggestions(_) => Some(Vec::new()),
            _ => None,
        });
        prop_assert_eq!(state.preferences.excluded_categories.clone(), last_excluded.unwrap_or_default());
        let last_switch = steps.iter().rev().find_map(|s| match s { Step::Suggestions(on) => Some(*on), _ => None });
        prop_assert_eq!(state.preferences.suggestions_enabled, last_switch);
        if last_consent != Some(true) {
            prop_assert!(state.interests.is_empty(), "nothing inferred is kept without consent");
        }
    }

    /// After an erase the state is empty, and whatever follows builds a profile only from what
    /// comes after: no earlier category, product or consent reappears.
    #[test]
    fn after_erase_nothing_earlier_comes_back(
        before in proptest::collection::vec(step(), 1..30),
        after in proptest::collection::vec(step(), 0..30),
    ) {
        let rules = Rules::default();
        let mut state = CustomerState::default();
        run(&mut state, &before, 0, &rules);
        apply_command(&mut state, &cmd(1000, CommandBody::Erase { request_ref: None }), &rules);
        prop_assert!(state.is_empty());
        run(&mut state, &after, 2000, &rules);
        let mut fresh = CustomerState::default();
        // The same later steps on a never-seen customer: the erased one must look exactly alike.
        run(&mut fresh, &after, 2000, &rules);
        prop_assert_eq!(state, fresh);
    }
}
