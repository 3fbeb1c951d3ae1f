use super::*;
use crate::codec::decode_finding;
use std::collections::VecDeque;
use tact_codec::{encode_click, InputFormat};
use tact_core::{ClickEvent, EventKind, Timestamp};
use tact_store::MemoryStore;
use tact_telemetry::{Exporter, InsightsMetrics};

const MIN: i64 = 60_000;
const T0: i64 = 1_717_200_000_000;
const PARTITIONS: i32 = 3;

fn settings() -> Arc<InsightsSettings> {
    let mut s = InsightsSettings::load(None, &[]).expect("defaults");
    s.clickstream_format = InputFormat::Json;
    s.rules.min_sessions = 3;
    s.rules.target_pages = vec!["/help/shipping".into()];
    Arc::new(s)
}

fn click(customer: &str, session: &str, t: i64, page: &str) -> Vec<u8> {
    let mut ev = ClickEvent::new(
        &format!("{customer}-{t}"),
        customer,
        session,
        Timestamp(t),
        EventKind::PageView,
    );
    ev.page = Some(page.into());
    encode_click(&ev, InputFormat::Json, 0)
}

/// Per partition, the clickstream: 24 sessions walking a long way to the shipping page, spread
/// over the partitions, then one event per partition a day later that closes every window.
fn input() -> Vec<Vec<Vec<u8>>> {
    let pages = ["/", "/c/a", "/c/b", "/p/x", "/help", "/help/shipping"];
    let mut per: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
    for s in 0..24i64 {
        for (i, page) in pages.iter().enumerate() {
            let t = T0 + s * 2 * MIN + i as i64 * MIN;
            per[(s % 3) as usize].push(click(&format!("cust-{s}"), &format!("sess-{s}"), t, page));
        }
    }
    // Two sessions far later close every window (one session alone never moves time).
    for (p, records) in per.iter_mut().enumerate() {
        for n in 0..2 {
            records.push(click(
                &format!("flush-{p}-{n}"),
                &format!("flush-{n}"),
                T0 + 24 * 60 * MIN,
                "/",
            ));
        }
    }
    per
}

/// Instances of the lane, each owning some partitions with its own store, and a stand-in for
/// the partials topic between them (records reach the owner of their partition, in order).
struct Group {
    members: Vec<(Lane, Arc<MemoryStore>, Vec<Partition>)>,
    partials: Vec<VecDeque<Record>>,
    partials_next: Vec<i64>,
    findings: Vec<(String, i64, String)>,
}

impl Group {
    fn new(owners: &[Vec<Partition>]) -> Group {
        let mut members = Vec::new();
        for owned in owners {
            let mut lane = Lane::new(
                settings(),
                InsightsMetrics::register(&mut Exporter::registry(), &[]),
            );
            let store = Arc::new(MemoryStore::new());
            for p in owned {
                let cx = Cx {
                    store: &*store,
                    partitions: owned,
                    partition_count: PARTITIONS,
                };
                lane.open(&cx, *p).expect("open");
            }
            members.push((lane, store, owned.clone()));
        }
        Group {
            members,
            partials: vec![VecDeque::new(); PARTITIONS as usize],
            partials_next: vec![0; PARTITIONS as usize],
            findings: Vec::new(),
        }
    }

    fn owner(&self, p: Partition) -> usize {
        self.members
            .iter()
            .position(|(_, _, owned)| owned.contains(&p))
            .expect("an owner")
    }

    fn apply(&mut self, m: usize, emit: Emit) {
        let (_, store, _) = &self.members[m];
        let mut commit = emit.commit;
        for (p, input, o) in &emit.applied {
            let topic = if *input == Input::Driving {
                "clickstream"
            } else {
                "partials"
            };
            commit
                .meta_puts
                .push((*p, MetaKey::Applied(topic.into()), encode_i64(*o)));
        }
        store.commit(&commit).expect("commit");
        for (_, r) in emit.outputs {
            if r.topic == self.members[m].0.settings.partials_topic {
                let to = r.partition.expect("explicit partition") as usize;
                let offset = self.partials_next[to];
                self.partials_next[to] += 1;
                self.partials[to].push_back(Record {
                    input: PARTIALS,
                    partition: to as i32,
                    offset,
                    key: Some(r.key),
                    value: r.value,
                });
            } else {
                let f = decode_finding(r.value.as_deref().unwrap_or_default()).expect("finding");
                self.findings.push((f.finding_id, f.sessions, f.kind));
            }
        }
    }

    fn feed(&mut self, records: Vec<Record>) {
        let Some(p) = records.first().map(|r| r.partition) else {
            return;
        };
        let m = self.owner(p);
        let (lane, store, owned) = &mut self.members[m];
        let cx = Cx {
            store: &**store,
            partitions: owned,
            partition_count: PARTITIONS,
        };
        let emit = lane.process(&cx, records).expect("process");
        self.apply(m, emit);
    }

    /// Delivers the partials topic until nothing is in flight.
    fn settle(&mut self) {
        while let Some(p) = (0..PARTITIONS as usize).find(|p| !self.partials[*p].is_empty()) {
            let records: Vec<Record> = self.partials[p].drain(..).collect();
            self.feed(records);
        }
    }

    fn findings(&self) -> Vec<(String, i64, String)> {
        let mut f = self.findings.clone();
        f.sort();
        f.dedup();
        f
    }
}

fn run(owners: &[Vec<Partition>], chunk: usize) -> Vec<(String, i64, String)> {
    let mut g = Group::new(owners);
    let per = input();
    let longest = per.iter().map(Vec::len).max().unwrap_or(0);
    // Partitions interleave chunk by chunk, as consumers would.
    for start in (0..longest).step_by(chunk) {
        for (p, records) in per.iter().enumerate() {
            let batch: Vec<Record> = records
                .iter()
                .enumerate()
                .skip(start)
                .take(chunk)
                .map(|(o, v)| Record {
                    input: Input::Driving,
                    partition: p as i32,
                    offset: o as i64,
                    key: None,
                    value: Some(v.clone()),
                })
                .collect();
            g.feed(batch);
            g.settle();
        }
    }
    g.findings()
}

#[test]
fn one_instance_and_three_publish_the_same_findings() {
    let one = run(&[vec![0, 1, 2]], 7);
    let three = run(&[vec![0], vec![1], vec![2]], 5);
    assert!(
        one.iter().any(|(_, n, k)| k == "HARD_TO_FIND" && *n == 24),
        "every partition's sessions count towards one finding: {one:?}"
    );
    assert_eq!(one, three);
}

#[test]
fn a_window_is_published_only_once_every_partition_has_closed_its_share() {
    let mut g = Group::new(&[vec![0, 1, 2]]);
    let per = input();
    // Partitions 0 and 1 run to the end; partition 2 stops before its closing event.
    for (p, records) in per.iter().enumerate() {
        let n = if p == 2 {
            records.len() - 1
        } else {
            records.len()
        };
        let batch: Vec<Record> = records[..n]
            .iter()
            .enumerate()
            .map(|(o, v)| Record {
                input: Input::Driving,
                partition: p as i32,
                offset: o as i64,
                key: None,
                value: Some(v.clone()),
            })
            .collect();
        g.feed(batch);
        g.settle();
    }
    assert!(
        g.findings().is_empty(),
        "partition 2 has not passed the window: {:?}",
        g.findings()
    );
    let last = per[2].len() - 1;
    g.feed(vec![Record {
        input: Input::Driving,
        partition: 2,
        offset: last as i64,
        key: None,
        value: Some(per[2][last].clone()),
    }]);
    g.settle();
    assert!(!g.findings().is_empty());
}

/// A restore can bring back a batch's sessions and shares without its applied offsets; the
/// clickstream after the restored offsets is then read again. Nothing may be counted twice.
#[test]
fn input_read_again_after_a_partial_restore_is_not_counted_twice() {
    let straight = run(&[vec![0, 1, 2]], 4);
    let mut g = Group::new(&[vec![0, 1, 2]]);
    let per = input();
    let feed_all = |g: &mut Group, upto: usize| {
        for (p, records) in per.iter().enumerate() {
            let batch: Vec<Record> = records
                .iter()
                .enumerate()
                .take(upto)
                .map(|(o, v)| Record {
                    input: Input::Driving,
                    partition: p as i32,
                    offset: o as i64,
                    key: None,
                    value: Some(v.clone()),
                })
                .collect();
            g.feed(batch);
            g.settle();
        }
    };
    feed_all(&mut g, 30);
    // The applied offsets never reached the changelog; a new owner opens the partitions from
    // the store and the edge re-reads everything from the start.
    let store = g.members[0].1.clone();
    let mut lane = Lane::new(
        settings(),
        InsightsMetrics::register(&mut Exporter::registry(), &[]),
    );
    for p in 0..PARTITIONS {
        let owned = vec![0, 1, 2];
        let cx = Cx {
            store: &*store,
            partitions: &owned,
            partition_count: PARTITIONS,
        };
        lane.open(&cx, p).expect("open");
    }
    g.members[0].0 = lane;
    feed_all(&mut g, usize::MAX);
    assert_eq!(g.findings(), straight);
}
