//! Event-time interleaving of the two co-partitioned inputs, as Kafka Streams does for a task
//! with several input partitions: of the records waiting for one partition number, the one with
//! the smallest event time is applied first (a command before an event at the same instant).
//!
//! Each input's own order is kept (offsets are committed in order), so only the heads compete.
//! An event dated more than an hour ahead of the partition's event time (a forged 2150, a
//! device a day ahead) is ordered as if at the partition's time, when it competes with another
//! customer's command: taken at its word, it would let every command behind it overtake the
//! clicks before them (found by the fault matrix). The partition's time is the job's clock,
//! advanced here by each click released, so the order depends on the input alone.
//! When one input has nothing waiting for that partition, the other's records wait up to
//! `max_wait` for it, then go ahead alone: a quiet command topic delays clicks by at most that,
//! and a command that arrives later than the wait is applied at arrival, never lost.
//!
//! Records held here are not applied, so their offsets are neither applied nor committed: a
//! crash re-reads them. Records arrive decoded; their event time is read, not decoded again.

use super::work::{Arrived, COMMANDS};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tact_core::PartitionClock;

/// How far ahead of its partition's event time a click may be and still order by its own time.
const FUTURE_MS: i64 = 60 * 60 * 1000;
/// How many held clicks behind a lane's head tell where the partition is, before its time is
/// known (a forged click's own neighbours); bounded so a long lane costs no more per release.
const LOOKAHEAD: usize = 64;

#[derive(Debug)]
struct Held {
    input: Arrived,
    since: Instant,
}

#[derive(Debug, Default)]
struct Lanes {
    clicks: VecDeque<Held>,
    commands: VecDeque<Held>,
}

/// Holds records per partition number until they can be released in event-time order.
#[derive(Debug)]
pub struct Interleaver {
    max_wait: Duration,
    lanes: HashMap<i32, Lanes>,
    held: usize,
}

impl Interleaver {
    pub fn new(max_wait: Duration) -> Interleaver {
        Interleaver {
            max_wait,
            lanes: HashMap::new(),
            held: 0,
        }
    }

    /// Records waiting.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Adds records in the order they were consumed.
    pub fn push(&mut self, batch: Vec<Arrived>, now: Instant) {
        for input in batch {
            let lanes = self.lanes.entry(input.partition).or_default();
            let commands = input.input == COMMANDS;
            let held = Held { input, since: now };
            if commands {
                lanes.commands.push_back(held);
            } else {
                lanes.clicks.push_back(held);
            }
            self.held += 1;
        }
    }

    /// Drops what is held for a partition this instance no longer owns (the new owner re-reads it).
    pub fn forget(&mut self, partition: i32) {
        if let Some(l) = self.lanes.remove(&partition) {
            self.held -= l.clicks.len() + l.commands.len();
        }
    }

    /// Everything that may go now, in the order to apply it. `clocks` are the partitions'
    /// event-time clocks as the job has them (observed with `quorum`).
    pub fn release(
        &mut self,
        now: Instant,
        clocks: &HashMap<i32, PartitionClock>,
        quorum: usize,
    ) -> Vec<Arrived> {
        let mut out = Vec::new();
        let mut partitions: Vec<i32> = self.lanes.keys().copied().collect();
        partitions.sort_unstable();
        for p in partitions {
            let Some(lanes) = self.lanes.get_mut(&p) else {
                continue;
            };
            // Copied only if a command waits here: without one no click competes (the usual case).
            let mut clock =
                (!lanes.commands.is_empty()).then(|| clocks.get(&p).cloned().unwrap_or_default());
            loop {
                let take_command = match (lanes.clicks.front(), lanes.commands.front()) {
                    (Some(click), Some(cmd)) => {
                        let partition_time = clock.as_ref().map_or(i64::MIN, PartitionClock::time);
                        let behind = earliest_behind(&lanes.clicks);
                        cmd.input.time()
                            <= ordering_time(&click.input, &cmd.input, partition_time, behind)
                    }
                    (Some(click), None) if now.duration_since(click.since) >= self.max_wait => {
                        false
                    }
                    (None, Some(cmd)) if now.duration_since(cmd.since) >= self.max_wait => true,
                    _ => break,
                };
                let lane = if take_command {
                    &mut lanes.commands
                } else {
                    &mut lanes.clicks
                };
                if let Some(h) = lane.pop_front() {
                    match (&mut clock, h.input.customer_id()) {
                        // As the job will (it observes every click it applies), while a
                        // command is still there to compete with.
                        (Some(c), Some(customer))
                            if !take_command && !lanes.commands.is_empty() =>
                        {
                            c.observe(customer, h.input.time(), quorum);
                        }
                        _ => {}
                    }
                    out.push(h.input);
                    self.held -= 1;
                }
            }
            if lanes.clicks.is_empty() && lanes.commands.is_empty() {
                self.lanes.remove(&p);
            }
        }
        out
    }
}

/// The earliest event time among the clicks held just behind the head of `clicks` (up to
/// [`LOOKAHEAD`] of them), if any.
fn earliest_behind(clicks: &VecDeque<Held>) -> Option<i64> {
    clicks
        .iter()
        .skip(1)
        .take(LOOKAHEAD)
        .filter(|h| h.input.customer_id().is_some())
        .map(|h| h.input.time())
        .min()
}

/// The time a click competes with `cmd` at: its own, unless it is far ahead of where the
/// partition is (its agreed time, or a click already held behind it, whichever is earlier) and
/// the command is another customer's (a customer's own clock orders their own records). The
/// clicks behind it cover a partition's start, before its time is known: a forged event there,
/// taken at its word, would let every command behind it overtake the clicks after it, even
/// clicks of the command's own customer.
fn ordering_time(click: &Arrived, cmd: &Arrived, partition_time: i64, behind: Option<i64>) -> i64 {
    let t = click.time();
    let known = (partition_time != i64::MIN).then_some(partition_time);
    let Some(reference) = known.into_iter().chain(behind).min() else {
        return t;
    };
    let far_ahead = t > reference.saturating_add(FUTURE_MS);
    if far_ahead && click.customer_id() != cmd.customer_id() {
        reference
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::work::{Work, CLICKS};
    use super::*;
    use tact_codec::ErrorClass;
    use tact_core::{ClickEvent, CommandBody, EventKind, ProfileCommand, Timestamp};
    use tact_edge::Input;

    fn input(source: Input, partition: i32, offset: i64, time: i64) -> Arrived {
        input_of("c", source, partition, offset, time)
    }

    fn input_of(customer: &str, source: Input, partition: i32, offset: i64, time: i64) -> Arrived {
        let work = if source == COMMANDS {
            Work::Command(ProfileCommand {
                command_id: format!("k{offset}"),
                customer_id: customer.into(),
                issued_at: Timestamp(time),
                body: CommandBody::Erase { request_ref: None },
            })
        } else if time == i64::MIN {
            Work::Dead(ErrorClass::Malformed, "bad".into())
        } else {
            Work::Click(ClickEvent::new(
                "e",
                customer,
                "s",
                Timestamp(time),
                EventKind::Other,
            ))
        };
        Arrived {
            input: source,
            partition,
            offset,
            key: None,
            raw: None,
            work,
        }
    }

    fn order(out: &[Arrived]) -> Vec<(Input, i64)> {
        out.iter().map(|i| (i.input, i.offset)).collect()
    }

    #[test]
    fn a_command_is_applied_between_the_events_around_it_in_event_time() {
        let mut il = Interleaver::new(Duration::from_millis(50));
        let t = Instant::now();
        il.push(
            vec![
                input(CLICKS, 0, 0, 100),
                input(CLICKS, 0, 1, 300),
                input(COMMANDS, 0, 0, 200),
                input(CLICKS, 0, 2, 400),
            ],
            t,
        );
        // Once the command lane runs dry, the later clicks wait for the window: a command
        // between them may still be on its way.
        let out = il.release(t, &HashMap::new(), 2);
        assert_eq!(order(&out), [(CLICKS, 0), (COMMANDS, 0)]);
        assert_eq!(il.held(), 2);
        assert!(il
            .release(t + Duration::from_millis(49), &HashMap::new(), 2)
            .is_empty());
        let later = il.release(t + Duration::from_millis(50), &HashMap::new(), 2);
        assert_eq!(order(&later), [(CLICKS, 1), (CLICKS, 2)]);
        assert_eq!(il.held(), 0);
    }

    #[test]
    fn each_input_keeps_its_own_offset_order_and_ties_go_to_the_command() {
        let mut il = Interleaver::new(Duration::ZERO);
        let t = Instant::now();
        il.push(
            vec![
                input(CLICKS, 0, 0, 500),
                // Late event: its own lane's order wins over event time.
                input(CLICKS, 0, 1, 100),
                input(COMMANDS, 0, 0, 500),
            ],
            t,
        );
        let out = il.release(t, &HashMap::new(), 2);
        assert_eq!(order(&out), [(COMMANDS, 0), (CLICKS, 0), (CLICKS, 1)]);
    }

    #[test]
    fn an_event_stamped_far_ahead_lets_no_command_overtake_the_clicks_it_came_after() {
        const H: i64 = 3_600_000;
        const YEAR_2150: i64 = 5_680_281_600_000;
        let mut clock = PartitionClock::default();
        clock.observe("a", 10 * H, 2);
        clock.observe("b", 10 * H, 2);
        let clocks = HashMap::from([(0, clock)]);
        let mut il = Interleaver::new(Duration::ZERO);
        let t = Instant::now();
        il.push(
            vec![
                input_of("forger", CLICKS, 0, 0, YEAR_2150),
                input_of("ann", CLICKS, 0, 1, 10 * H + 100),
                input_of("ann", CLICKS, 0, 2, 10 * H + 300),
                input_of("ann", COMMANDS, 0, 0, 10 * H + 200),
            ],
            t,
        );
        // Before, ann's command went first (it is earlier than 2150), ahead of her click at +100.
        let out = il.release(t, &clocks, 2);
        assert_eq!(
            order(&out),
            [(CLICKS, 0), (CLICKS, 1), (COMMANDS, 0), (CLICKS, 2)]
        );
        // A customer's own clock orders their own records, however far ahead.
        il.push(
            vec![
                input_of("forger", CLICKS, 0, 3, YEAR_2150 + 1),
                input_of("forger", COMMANDS, 0, 1, YEAR_2150),
            ],
            t,
        );
        assert_eq!(
            order(&il.release(t, &clocks, 2)),
            [(COMMANDS, 1), (CLICKS, 3)]
        );
    }

    #[test]
    fn a_device_a_day_ahead_at_a_partitions_start_lets_no_command_overtake_its_own_customers_click()
    {
        const H: i64 = 3_600_000;
        // No clock yet: the partition has seen no customer. The forger's first click, a day
        // ahead, is at the head; ann's click at +100 waits behind it, her command at +200.
        let mut il = Interleaver::new(Duration::ZERO);
        let t = Instant::now();
        il.push(
            vec![
                input_of("forger", CLICKS, 0, 0, 34 * H),
                input_of("ann", CLICKS, 0, 1, 10 * H + 100),
                input_of("ann", COMMANDS, 0, 0, 10 * H + 200),
                input_of("bob", COMMANDS, 0, 1, 10 * H + 400),
                input_of("ann", CLICKS, 0, 2, 10 * H + 300),
            ],
            t,
        );
        assert_eq!(
            order(&il.release(t, &HashMap::new(), 2)),
            [
                (CLICKS, 0),
                (CLICKS, 1),
                (COMMANDS, 0),
                (CLICKS, 2),
                (COMMANDS, 1)
            ]
        );
        // Honest clicks in time order, an hour apart or more, are taken at their word.
        let mut il = Interleaver::new(Duration::ZERO);
        il.push(
            vec![
                input_of("ann", CLICKS, 0, 0, 12 * H),
                input_of("ann", CLICKS, 0, 1, 14 * H),
                input_of("bob", COMMANDS, 0, 0, 11 * H),
            ],
            t,
        );
        assert_eq!(
            order(&il.release(t, &HashMap::new(), 2)),
            [(COMMANDS, 0), (CLICKS, 0), (CLICKS, 1)]
        );
    }

    #[test]
    fn partitions_do_not_wait_for_each_other_and_undecodable_records_go_first() {
        let mut il = Interleaver::new(Duration::from_secs(60));
        let t = Instant::now();
        il.push(
            vec![
                input(CLICKS, 0, 0, 100),
                input(COMMANDS, 1, 0, 50),
                input(CLICKS, 1, 0, i64::MIN),
            ],
            t,
        );
        let out = il.release(t, &HashMap::new(), 2);
        // Partition 1 has both inputs: the bad click goes first (then its command waits for the
        // next click); partition 0 waits for a command.
        assert_eq!(order(&out), [(CLICKS, 0)]);
        assert_eq!(out[0].partition, 1);
        assert!(matches!(out[0].work, Work::Dead(..)));
        assert_eq!(il.held(), 2);
        il.forget(0);
        assert_eq!(il.held(), 1);
    }
}
