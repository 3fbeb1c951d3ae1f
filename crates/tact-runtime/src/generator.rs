//! A deterministic synthetic clickstream with realistic sessions: browsers who circle one
//! category, shoppers who buy, gift buyers, visitors who struggle with search and the FAQ (some
//! of whom ask for a chat or a callback, with the contact system's `CALLBACK_DONE` replies), and
//! a few events of types tact does not know. Consent commands precede a customer's first event.
//! Used by `tact generate`, `tact demo` and the benchmarks.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use tact_core::{
    callback_decision_id, ClickEvent, CommandBody, EventKind, Item, ProfileCommand, Purpose,
    Timestamp,
};

const CATEGORIES: [&str; 10] = [
    "widgets",
    "widgetizers",
    "kitchen",
    "bread_makers",
    "shoes",
    "books",
    "music",
    "garden",
    "toys",
    "children_books",
];

/// A customer seen this recently (event time) continues rather than returns.
const RECENT_MS: i64 = 31 * 60_000;

/// Where a browser's eye wanders next: accessories of what they like.
fn companion(category: &'static str) -> &'static str {
    match category {
        "widgetizers" => "widgets",
        "bread_makers" => "kitchen",
        "toys" => "children_books",
        other => other,
    }
}

/// One generated input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    Click(ClickEvent),
    Command(ProfileCommand),
}

impl Generated {
    pub fn customer_id(&self) -> &str {
        match self {
            Generated::Click(e) => &e.customer_id,
            Generated::Command(c) => &c.customer_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub customers: u64,
    pub seed: u64,
    /// Event time of the first event (epoch ms).
    pub start_ms: i64,
    /// Sessions in progress at once (interleaved like real traffic).
    pub concurrent_sessions: usize,
    /// Share of customers who grant personalization consent / who decline it (the rest say nothing).
    pub consent_granted: f64,
    pub consent_denied: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            customers: 1000,
            seed: 7,
            start_ms: 1_763_800_000_000,
            concurrent_sessions: 64,
            consent_granted: 0.6,
            consent_denied: 0.15,
        }
    }
}

#[derive(Debug)]
struct Session {
    customer: u64,
    id: String,
    clock: i64,
    steps: Vec<Step>,
    next: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Page(&'static str),
    Category(&'static str),
    Product(&'static str, u32),
    Search(&'static str, u32),
    Faq(&'static str, f32, u64),
    Cart(&'static str, u32),
    Purchase(&'static str, u32, bool),
    Dismiss,
    /// The visitor clicks the chat icon.
    ChatRequest,
    /// "Call me" about a product, answered by the contact system this many ms later (or never).
    CallbackRequest(&'static str, u32, Option<i64>),
    Unknown,
}

/// An endless, reproducible stream (same seed, same stream).
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: SmallRng,
    sessions: Vec<Session>,
    last_seen: HashMap<u64, i64>,
    active: std::collections::HashSet<u64>,
    pending: std::collections::VecDeque<Generated>,
    clock: i64,
    counter: u64,
    /// The contact system's `CALLBACK_DONE` replies, sent when the stream's clock reaches them.
    replies: std::collections::VecDeque<(u64, ClickEvent)>,
}

fn customer_id(n: u64) -> String {
    format!("cust-{n:07}")
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Generator {
        Generator {
            rng: SmallRng::seed_from_u64(cfg.seed),
            clock: cfg.start_ms,
            cfg,
            sessions: Vec::new(),
            last_seen: HashMap::new(),
            active: Default::default(),
            pending: Default::default(),
            counter: 0,
            replies: Default::default(),
        }
    }

    fn favourite(customer: u64) -> &'static str {
        CATEGORIES[(customer.wrapping_mul(2_654_435_761) % CATEGORIES.len() as u64) as usize]
    }

    fn script(&mut self, customer: u64) -> Vec<Step> {
        let fav = Self::favourite(customer);
        let persona = customer.wrapping_mul(40_503) % 100;
        let r = &mut self.rng;
        let mut steps = vec![Step::Page("/")];
        match persona {
            0..=44 => {
                steps.push(Step::Category(fav));
                for _ in 0..r.random_range(2..7) {
                    steps.push(Step::Product(fav, r.random_range(1..12)));
                }
                if r.random_bool(0.3) {
                    let other = if r.random_bool(0.5) {
                        companion(fav)
                    } else {
                        CATEGORIES[r.random_range(0..CATEGORIES.len())]
                    };
                    steps.push(Step::Category(other));
                    steps.push(Step::Product(other, r.random_range(1..12)));
                }
                if r.random_bool(0.05) {
                    // A sensitive category (never remembered per person under the shipped policy).
                    steps.push(Step::Category("health"));
                    steps.push(Step::Product("health", r.random_range(1..5)));
                }
                if r.random_bool(0.15) {
                    steps.push(Step::Dismiss);
                }
            }
            45..=59 => {
                steps.push(Step::Search("bread rise no bake", 0));
                steps.push(Step::Search("dough proofer", r.random_range(0..2)));
                steps.push(Step::Faq(
                    "/help/shipping",
                    r.random_range(0.6..1.0),
                    r.random_range(20_000..90_000),
                ));
                steps.push(Step::Faq(
                    "/help/returns",
                    r.random_range(0.7..1.0),
                    r.random_range(30_000..120_000),
                ));
                if r.random_bool(0.5) {
                    steps.push(Step::Category(fav));
                }
                // Some ask for a person: a chat now, or a call (answered within the hour by
                // the contact system, mostly).
                let ask: f64 = r.random();
                if ask < 0.25 {
                    steps.push(Step::ChatRequest);
                } else if ask < 0.4 {
                    let answered = r.random_bool(0.8).then(|| r.random_range(5..55) * 60_000);
                    steps.push(Step::CallbackRequest(fav, r.random_range(1..12), answered));
                }
            }
            60..=84 => {
                steps.push(Step::Category(fav));
                let product = r.random_range(1..4);
                steps.push(Step::Product(fav, product));
                steps.push(Step::Product(fav, r.random_range(1..12)));
                steps.push(Step::Cart(fav, product));
                if r.random_bool(0.6) {
                    steps.push(Step::Purchase(fav, product, false));
                } else {
                    // Left in the cart: explicit intent, the only reason for an email.
                    steps.push(Step::Page("/cart"));
                }
            }
            85..=94 => {
                let gift_cat = if r.random_bool(0.5) {
                    "children_books"
                } else {
                    "toys"
                };
                steps.push(Step::Category(gift_cat));
                let product = r.random_range(1..12);
                steps.push(Step::Product(gift_cat, product));
                steps.push(Step::Purchase(gift_cat, product, true));
            }
            _ => {
                steps.push(Step::Unknown);
                steps.push(Step::Category(fav));
                steps.push(Step::Unknown);
            }
        }
        steps
    }

    fn start_session(&mut self) {
        // A customer has one session at a time, so each customer's events stay in time order.
        // Most visits come from customers away for longer than the session gap (they are
        // "returning"); a few from someone seen minutes ago.
        let mut tries = 0;
        let customer = loop {
            let c = self.rng.random_range(0..self.cfg.customers.max(1));
            if self.active.contains(&c) {
                continue;
            }
            tries += 1;
            let recent = self
                .last_seen
                .get(&c)
                .is_some_and(|last| self.clock - last < RECENT_MS);
            if !recent || tries >= 8 || self.rng.random_bool(0.3) {
                break c;
            }
        };
        self.active.insert(customer);
        let start = match self.last_seen.get(&customer) {
            None => {
                let roll: f64 = self.rng.random();
                let granted = if roll < self.cfg.consent_granted {
                    Some(true)
                } else if roll < self.cfg.consent_granted + self.cfg.consent_denied {
                    Some(false)
                } else {
                    None
                };
                if let Some(granted) = granted {
                    let mut purposes = vec![Purpose::Personalization];
                    if granted && self.rng.random_bool(0.6) {
                        purposes.push(Purpose::ProactiveChat);
                    }
                    if granted && self.rng.random_bool(0.4) {
                        purposes.push(Purpose::Marketing);
                    }
                    for purpose in purposes {
                        self.counter += 1;
                        self.pending.push_back(Generated::Command(ProfileCommand {
                            command_id: format!("cmd-{}-{}", self.cfg.seed, self.counter),
                            customer_id: customer_id(customer),
                            issued_at: Timestamp(self.clock),
                            body: CommandBody::SetConsent {
                                purpose,
                                channel: None,
                                granted,
                                source: "consent_banner".into(),
                                expires_at: None,
                            },
                        }));
                    }
                }
                self.clock
            }
            Some(last) => {
                // Traffic stays roughly in time order, as a site's is: a customer seen within
                // the last half hour continues 5-20 minutes after their last event (not
                // "returning"); one seen earlier comes back now. (A return days ahead of
                // everyone else would run the partition's event time ahead, ending the other
                // visitors' sessions between their clicks.)
                if self.clock - *last < RECENT_MS {
                    (*last + self.rng.random_range(5..20) * 60_000).max(self.clock)
                } else {
                    self.clock
                }
            }
        };
        let steps = self.script(customer);
        self.counter += 1;
        self.sessions.push(Session {
            customer,
            id: format!("sess-{}-{}", self.cfg.seed, self.counter),
            clock: start,
            steps,
            next: 0,
        });
    }

    fn event(&mut self, customer: u64, session: &str, at: i64, step: &Step) -> ClickEvent {
        self.counter += 1;
        let mut e = ClickEvent::new(
            &format!("evt-{}-{}", self.cfg.seed, self.counter),
            &customer_id(customer),
            session,
            Timestamp(at),
            EventKind::PageView,
        );
        e.dwell_ms = Some(self.rng.random_range(2_000..60_000));
        match step {
            Step::Page(p) => e.page = Some((*p).to_owned()),
            Step::Category(c) => {
                e.kind = EventKind::CategoryView;
                e.category = Some((*c).to_owned());
                e.page = Some(format!("/c/{c}"));
            }
            Step::Product(c, n) => {
                e.kind = EventKind::ProductView;
                e.category = Some((*c).to_owned());
                e.product_id = Some(format!("{c}-{n}"));
                e.page = Some(format!("/p/{c}-{n}"));
            }
            Step::Search(q, n) => {
                e.kind = EventKind::Search;
                e.search_query = Some((*q).to_owned());
                e.search_results = Some(*n);
                e.page = Some("/search".into());
            }
            Step::Faq(page, depth, dwell) => {
                e.kind = EventKind::FaqView;
                e.page = Some((*page).to_owned());
                e.scroll_depth = Some(*depth);
                e.dwell_ms = Some(*dwell);
            }
            Step::Cart(c, n) => {
                e.kind = EventKind::AddToCart;
                e.category = Some((*c).to_owned());
                e.product_id = Some(format!("{c}-{n}"));
                e.items = vec![item(c, *n)];
            }
            Step::Purchase(c, n, gift) => {
                e.kind = EventKind::Purchase;
                e.category = Some((*c).to_owned());
                e.items = vec![item(c, *n)];
                e.gift = *gift;
                e.page = Some("/checkout/done".into());
            }
            Step::Dismiss => {
                e.kind = EventKind::SuggestionDismissed;
                e.suggestion_kind = Some("recommendation".into());
            }
            Step::ChatRequest => {
                e.kind = EventKind::ChatRequested;
                e.page = Some("/help".into());
            }
            Step::CallbackRequest(c, n, answered) => {
                e.kind = EventKind::CallbackRequested;
                e.category = Some((*c).to_owned());
                e.product_id = Some(format!("{c}-{n}"));
                if let Some(after) = answered {
                    // The contact system names the callback decision it answered.
                    self.counter += 1;
                    let mut done = ClickEvent::new(
                        &format!("evt-{}-{}", self.cfg.seed, self.counter),
                        &e.customer_id,
                        session,
                        Timestamp(at + after),
                        EventKind::CallbackDone,
                    );
                    done.decision_id = Some(callback_decision_id(&e.customer_id, &e.event_id));
                    let i = self
                        .replies
                        .partition_point(|(_, r)| r.event_time <= done.event_time);
                    self.replies.insert(i, (customer, done));
                }
            }
            Step::Unknown => e.kind = EventKind::Unknown("HOVER".into()),
        }
        e
    }
}

fn item(category: &str, n: u32) -> Item {
    Item {
        product_id: format!("{category}-{n}"),
        category: Some(category.to_owned()),
        quantity: 1,
        unit_price_cents: 1_000 + i64::from(n) * 250,
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if let Some(g) = self.pending.pop_front() {
            return Some(g);
        }
        // A reply whose time has come, to a customer not in a visit right now (their events stay
        // in time order).
        let due = self
            .replies
            .iter()
            .position(|(c, r)| r.event_time.millis() <= self.clock && !self.active.contains(c));
        if let Some((customer, mut reply)) = due.and_then(|i| self.replies.remove(i)) {
            let last = self.last_seen.get(&customer).copied().unwrap_or(0);
            reply.event_time = Timestamp(reply.event_time.millis().max(last));
            self.last_seen.insert(customer, reply.event_time.millis());
            return Some(Generated::Click(reply));
        }
        // Never more sessions than customers: one customer has one session at a time.
        let concurrent = self.cfg.concurrent_sessions.clamp(
            1,
            usize::try_from(self.cfg.customers.max(1)).unwrap_or(usize::MAX),
        );
        while self.sessions.len() < concurrent {
            self.start_session();
            if let Some(g) = self.pending.pop_front() {
                return Some(g);
            }
        }
        let idx = self.rng.random_range(0..self.sessions.len());
        let (customer, id, at, step) = {
            let s = &mut self.sessions[idx];
            let step = s.steps[s.next].clone();
            s.next += 1;
            s.clock += 10_000 + (s.customer % 50) as i64 * 1_000;
            (s.customer, s.id.clone(), s.clock, step)
        };
        self.clock += 1_000;
        let ev = self.event(customer, &id, at, &step);
        self.last_seen.insert(customer, at);
        if self.sessions[idx].next >= self.sessions[idx].steps.len() {
            let done = self.sessions.swap_remove(idx);
            self.active.remove(&done.customer);
        }
        Some(Generated::Click(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<_> = Generator::new(GeneratorConfig::default())
            .take(500)
            .collect();
        let b: Vec<_> = Generator::new(GeneratorConfig::default())
            .take(500)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn each_customers_events_are_in_time_order_and_consent_comes_first() {
        let mut last: HashMap<String, i64> = HashMap::new();
        let mut commanded = std::collections::HashSet::new();
        let mut returning = 0;
        let mut latest = 0;
        for g in Generator::new(GeneratorConfig {
            customers: 500,
            ..Default::default()
        })
        .take(20_000)
        {
            match g {
                Generated::Command(c) => {
                    assert!(
                        !last.contains_key(&c.customer_id),
                        "consent after the first event"
                    );
                    commanded.insert(c.customer_id);
                }
                Generated::Click(e) => {
                    if let Some(prev) = last.get(&e.customer_id) {
                        assert!(e.event_time.millis() >= *prev);
                        if e.event_time.millis() - prev >= 30 * 60_000 {
                            returning += 1;
                        }
                    }
                    // Roughly in time order across customers too: nobody runs hours ahead of
                    // the rest (that would move the partition's time past everyone's sessions).
                    latest = latest.max(e.event_time.millis());
                    assert!(
                        latest - e.event_time.millis() < 45 * 60_000,
                        "an event {} min behind the stream",
                        (latest - e.event_time.millis()) / 60_000
                    );
                    last.insert(e.customer_id, e.event_time.millis());
                }
            }
        }
        assert!(!commanded.is_empty());
        assert!(
            returning > 500,
            "the stream has returning customers: {returning}"
        );
    }
}
