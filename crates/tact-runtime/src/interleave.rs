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
//! crash re-reads them.

use crate::engine::{Input, Source};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Held {
    input: Input,
    since: Instant,
    /// Event time, decoded only when two heads are compared (`i64::MIN`: undecodable, so it goes
    /// first, to the dead-letter topic).
    time: Option<i64>,
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
    pub fn push(&mut self, batch: Vec<Input>, now: Instant) {
        for input in batch {
            let lanes = self.lanes.entry(input.partition).or_default();
            let held = Held {
                input,
                since: now,
                time: None,
            };
            match held.input.source {
                Source::ProfileCommands => lanes.commands.push_back(held),
                _ => lanes.clicks.push_back(held),
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

    /// Everything that may go now, in the order to apply it. `time_of` decodes a record's event
    /// time (called at most once per record, and only when two heads compete).
    pub fn release(&mut self, now: Instant, time_of: &mut dyn FnMut(&Input) -> i64) -> Vec<Input> {
        let mut out = Vec::new();
        let mut partitions: Vec<i32> = self.lanes.keys().copied().collect();
        partitions.sort_unstable();
        for p in partitions {
            let Some(lanes) = self.lanes.get_mut(&p) else {
                continue;
            };
            loop {
                let take_command = match (lanes.clicks.front_mut(), lanes.commands.front_mut()) {
                    (Some(click), Some(cmd)) => {
                        let tc = *click.time.get_or_insert_with(|| time_of(&click.input));
                        let tm = *cmd.time.get_or_insert_with(|| time_of(&cmd.input));
                        tm <= tc
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
    use super::*;

    fn input(source: Source, partition: i32, offset: i64, time: i64) -> Input {
        Input {
            source,
            topic: source.label().to_owned(),
            partition,
            offset,
            key: None,
            // The test's "payload" is the event time.
            value: Some(time.to_be_bytes().to_vec()),
        }
    }

    fn time_of(i: &Input) -> i64 {
        i64::from_be_bytes(
            i.value
                .as_deref()
                .and_then(|v| v.try_into().ok())
                .unwrap_or([0; 8]),
        )
    }

    fn order(out: &[Input]) -> Vec<(Source, i64)> {
        out.iter().map(|i| (i.source, i.offset)).collect()
    }

    #[test]
    fn a_command_is_applied_between_the_events_around_it_in_event_time() {
        let mut il = Interleaver::new(Duration::from_millis(50));
        let t = Instant::now();
        il.push(
            vec![
                input(Source::Clickstream, 0, 0, 100),
                input(Source::Clickstream, 0, 1, 300),
                input(Source::ProfileCommands, 0, 0, 200),
                input(Source::Clickstream, 0, 2, 400),
            ],
            t,
        );
        // Once the command lane runs dry, the later clicks wait for the window: a command
        // between them may still be on its way.
        let out = il.release(t, &mut time_of);
        assert_eq!(
            order(&out),
            [(Source::Clickstream, 0), (Source::ProfileCommands, 0)]
        );
        assert_eq!(il.held(), 2);
        assert!(il
            .release(t + Duration::from_millis(49), &mut time_of)
            .is_empty());
        let later = il.release(t + Duration::from_millis(50), &mut time_of);
        assert_eq!(
            order(&later),
            [(Source::Clickstream, 1), (Source::Clickstream, 2)]
        );
        assert_eq!(il.held(), 0);
    }

    #[test]
    fn each_input_keeps_its_own_offset_order_and_ties_go_to_the_command() {
        let mut il = Interleaver::new(Duration::ZERO);
        let t = Instant::now();
        il.push(
            vec![
                input(Source::Clickstream, 0, 0, 500),
                // Late event: its own lane's order wins over event time.
                input(Source::Clickstream, 0, 1, 100),
                input(Source::ProfileCommands, 0, 0, 500),
            ],
            t,
        );
        let out = il.release(t, &mut time_of);
        assert_eq!(
            order(&out),
            [
                (Source::ProfileCommands, 0),
                (Source::Clickstream, 0),
                (Source::Clickstream, 1),
            ]
        );
    }

    #[test]
    fn partitions_do_not_wait_for_each_other() {
        let mut il = Interleaver::new(Duration::from_secs(60));
        let t = Instant::now();
        il.push(
            vec![
                input(Source::Clickstream, 0, 0, 100),
                input(Source::ProfileCommands, 1, 0, 50),
                input(Source::Clickstream, 1, 0, 60),
            ],
            t,
        );
        let out = il.release(t, &mut time_of);
        // Partition 1 has both inputs: its command goes; partition 0 waits for a command.
        assert_eq!(order(&out), [(Source::ProfileCommands, 0)]);
        assert_eq!(il.held(), 2);
        il.forget(0);
        assert_eq!(il.held(), 1);
    }
}
