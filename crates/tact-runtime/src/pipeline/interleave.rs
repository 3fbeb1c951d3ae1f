//! Event-time interleaving of the two co-partitioned inputs, as Kafka Streams does for a task
//! with several input partitions: of the records waiting for one partition number, the one with
//! the smallest event time is applied first (a command before an event at the same instant).
//!
//! Each input's own order is kept (offsets are committed in order), so only the heads compete.
//! When one input has nothing waiting for that partition, the other's records wait up to
//! `max_wait` for it, then go ahead alone: a quiet command topic delays clicks by at most that,
//! and a command that arrives later than the wait is applied at arrival, never lost.
//!
//! Records held here are not applied, so their offsets are neither applied nor committed: a
//! crash re-reads them. Records arrive decoded; their event time is read, not decoded again.

use super::work::{Arrived, COMMANDS};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

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

    /// Everything that may go now, in the order to apply it.
    pub fn release(&mut self, now: Instant) -> Vec<Arrived> {
        let mut out = Vec::new();
        let mut partitions: Vec<i32> = self.lanes.keys().copied().collect();
        partitions.sort_unstable();
        for p in partitions {
            let Some(lanes) = self.lanes.get_mut(&p) else {
                continue;
            };
            loop {
                let take_command = match (lanes.clicks.front(), lanes.commands.front()) {
                    (Some(click), Some(cmd)) => cmd.input.time() <= click.input.time(),
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

#[cfg(test)]
mod tests {
    use super::super::work::{Work, CLICKS};
    use super::*;
    use tact_codec::ErrorClass;
    use tact_core::{ClickEvent, CommandBody, EventKind, ProfileCommand, Timestamp};
    use tact_edge::Input;

    fn input(source: Input, partition: i32, offset: i64, time: i64) -> Arrived {
        let work = if source == COMMANDS {
            Work::Command(ProfileCommand {
                command_id: format!("k{offset}"),
                customer_id: "c".into(),
                issued_at: Timestamp(time),
                body: CommandBody::Erase { request_ref: None },
            })
        } else if time == i64::MIN {
            Work::Dead(ErrorClass::Malformed, "bad".into())
        } else {
            Work::Click(ClickEvent::new(
                "e",
                "c",
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
        let out = il.release(t);
        assert_eq!(order(&out), [(CLICKS, 0), (COMMANDS, 0)]);
        assert_eq!(il.held(), 2);
        assert!(il.release(t + Duration::from_millis(49)).is_empty());
        let later = il.release(t + Duration::from_millis(50));
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
        let out = il.release(t);
        assert_eq!(order(&out), [(COMMANDS, 0), (CLICKS, 0), (CLICKS, 1)]);
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
        let out = il.release(t);
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
