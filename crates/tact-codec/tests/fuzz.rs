//! Mutation fuzzing of every decoder tact runs on bytes it does not control: click events,
//! profile commands and catalog releases in each wire format, stored customer state, and the
//! policy file. Seeds are the checked-in corpus (`fuzz/corpus/<target>/`); each round mutates one
//! (bit flips, varint-sized overwrites, truncation, insertion, duplication, splicing) and decodes
//! it. A decoder must return, never panic, and allocate no more than the input justifies.
//!
//! Not coverage-guided: libFuzzer and AFL need a nightly toolchain or compiler plugins this
//! project's stable build does not have; the mutations are structure-blind but start from valid
//! records, which reaches deep into each decoder. `TACT_FUZZ_SECONDS` bounds the time per target
//! (1 by default, so `cargo test` stays quick; `make fuzz` runs 60), `TACT_FUZZ_SEED` replays a
//! run, and `TACT_FUZZ_WRITE_CORPUS=1` regenerates the seeds from the encoders.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tact_codec::{
    decode_click, decode_command, decode_release, decode_state, encode_click, encode_command,
    encode_release, encode_state, InputFormat,
};
use tact_core::state::SeenEvent;
use tact_core::{
    ClickEvent, CommandBody, CustomerState, EventKind, Item, Policy, ProfileCommand, Purpose,
    Release, Timestamp,
};

/// Counts the bytes live and the peak since the last reset (this binary's only test runs the
/// targets one after another, so nothing else allocates meanwhile).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MAX: usize = 1 << 20;

/// A decoder under test, run on each input.
type Decoder = Box<dyn Fn(&[u8])>;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn sample_click() -> ClickEvent {
    ClickEvent {
        page: Some("/p/widget".into()),
        category: Some("widgets".into()),
        product_id: Some("w-9".into()),
        search_query: Some("blue widget".into()),
        search_results: Some(4),
        scroll_depth: Some(0.5),
        dwell_ms: Some(1200),
        items: vec![Item {
            product_id: "w-9".into(),
            category: Some("widgets".into()),
            quantity: 2,
            unit_price_cents: 1999,
        }],
        gift: true,
        ..ClickEvent::new(
            "e-1",
            "cust-1",
            "sess-1",
            Timestamp(1_763_800_000_000),
            EventKind::AddToCart,
        )
    }
}

fn sample_commands() -> Vec<ProfileCommand> {
    let cmd = |body| ProfileCommand {
        command_id: "cmd-1".into(),
        customer_id: "cust-1".into(),
        issued_at: Timestamp(1_763_800_000_000),
        body,
    };
    vec![
        cmd(CommandBody::SetConsent {
            purpose: Purpose::Personalization,
            channel: None,
            granted: true,
            source: "banner".into(),
            expires_at: Some(Timestamp(1_800_000_000_000)),
        }),
        cmd(CommandBody::Follow {
            subject: "artist-1".into(),
            follow: true,
        }),
        cmd(CommandBody::Erase {
            request_ref: Some("dsr-1".into()),
        }),
    ]
}

/// The seeds of each target, from the encoders (written with `TACT_FUZZ_WRITE_CORPUS=1`).
fn generated(target: &str) -> Vec<Vec<u8>> {
    let formats = [
        (InputFormat::AvroConfluent, "confluent"),
        (InputFormat::AvroSingleObject, "single"),
        (InputFormat::AvroDatum, "datum"),
        (InputFormat::Json, "json"),
    ];
    match target {
        "click" => formats
            .iter()
            .map(|(f, _)| encode_click(&sample_click(), *f, 1))
            .collect(),
        "command" => formats
            .iter()
            .flat_map(|(f, _)| {
                sample_commands()
                    .into_iter()
                    .map(|c| encode_command(&c, *f, 2))
            })
            .collect(),
        "release" => formats
            .iter()
            .map(|(f, _)| {
                encode_release(
                    &Release {
                        release_id: "r-1".into(),
                        subject: "artist-1".into(),
                        title: "New album".into(),
                        product_ids: vec!["p-1".into(), "p-2".into()],
                        category: Some("music".into()),
                        released_at: Timestamp(1_763_800_000_000),
                    },
                    *f,
                    3,
                )
            })
            .collect(),
        "state" => {
            let mut s = CustomerState {
                first_seen: Some(Timestamp(5)),
                visits: 3,
                follows: vec!["artist-1".into()],
                recent_events: vec![SeenEvent {
                    digest: [1, 2, 3, 4, 5, 6, 7, 8],
                    at: Timestamp(7),
                }],
                ..CustomerState::default()
            };
            let rules = tact_core::Rules::default();
            tact_core::apply_event(&mut s, &sample_click(), &rules);
            vec![encode_state(&s)]
        }
        "policy" => vec![std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy.toml"),
        )
        .expect("deploy/policy.toml")],
        other => panic!("no target {other}"),
    }
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    if std::env::var_os("TACT_FUZZ_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, seed) in generated(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (TACT_FUZZ_WRITE_CORPUS=1 writes it)",
                dir.display()
            )
        })
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "{} is empty", dir.display());
    seeds
}

fn mutate(rng: &mut SmallRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff][rng.random_range(0..6)];
            }
            // A varint claiming a huge length or count.
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let huge = [0xfe, 0xff, 0xff, 0xff, 0x0f];
                for (j, v) in huge.iter().enumerate() {
                    if i + j < b.len() {
                        b[i + j] = *v;
                    }
                }
            }
            3 if len > 0 => b.truncate(rng.random_range(0..len)),
            4 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, junk);
            }
            5 if len > 1 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..len);
                let chunk = b[from..to].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, chunk);
            }
            6 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=b.len());
                let from = rng.random_range(0..=other.len());
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                let i = rng.random_range(0..len);
                b.remove(i);
            }
            _ => b.push(rng.random()),
        }
    }
    b
}

/// Runs `decode` on the target's seeds, then on their mutations for the time budget: no panic,
/// and no allocation beyond a small multiple of the input. Returns how many inputs ran.
fn fuzz(target: &str, budget: Duration, seed: u64, decode: &dyn Fn(&[u8])) -> Result<u64, String> {
    let seeds = seeds(target);
    let mut rng = SmallRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut runs = 0u64;
    let mut pending = seeds.clone();
    while started.elapsed() < budget || !pending.is_empty() {
        let input = pending.pop().unwrap_or_else(|| mutate(&mut rng, &seeds));
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(&input)));
        let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        if outcome.is_err() {
            return Err(format!(
                "{target}: the decoder panicked on {input:02x?} (TACT_FUZZ_SEED={seed})"
            ));
        }
        let limit = 64 * input.len() + (1 << 20);
        if used > limit {
            return Err(format!(
                "{target}: decoding {} bytes allocated {used} (limit {limit}) (TACT_FUZZ_SEED={seed}): {:02x?}",
                input.len(),
                &input[..input.len().min(64)]
            ));
        }
        runs += 1;
    }
    Ok(runs)
}

#[test]
fn no_decoder_panics_or_over_allocates_on_mutated_input() {
    let budget = Duration::from_secs_f64(
        std::env::var("TACT_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    let seed = std::env::var("TACT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("TACT_FUZZ_SEED={seed}");
    let formats = [
        InputFormat::AvroConfluent,
        InputFormat::AvroSingleObject,
        InputFormat::AvroDatum,
        InputFormat::Json,
    ];
    let all: [(&str, Decoder); 5] = [
        (
            "click",
            Box::new(move |b: &[u8]| {
                for f in formats {
                    let _ = decode_click(b, f, MAX);
                }
            }),
        ),
        (
            "command",
            Box::new(move |b: &[u8]| {
                for f in formats {
                    let _ = decode_command(b, f, MAX);
                }
            }),
        ),
        (
            "release",
            Box::new(move |b: &[u8]| {
                for f in formats {
                    let _ = decode_release(b, f, MAX);
                }
            }),
        ),
        (
            "state",
            Box::new(|b: &[u8]| {
                let _ = decode_state(b);
            }),
        ),
        (
            "policy",
            Box::new(|b: &[u8]| {
                if let Ok(text) = std::str::from_utf8(b) {
                    if let Ok(p) = toml::from_str::<Policy>(text) {
                        let _ = p.validate();
                    }
                }
            }),
        ),
    ];
    // The harness sees what it must: an allocation is counted, a panic is caught.
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    drop(std::hint::black_box(vec![0u8; 1 << 21]));
    assert!(
        PEAK.load(Ordering::Relaxed) - base >= 1 << 21,
        "allocations are not counted"
    );
    // Panics are caught and reported by the assertion, not printed for each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results: Vec<(&str, Result<u64, String>)> = all
        .iter()
        .map(|(target, decode)| (*target, fuzz(target, budget, seed, decode.as_ref())))
        .collect();
    std::panic::set_hook(hook);
    for (target, result) in results {
        match result {
            Ok(runs) => println!("{target}: {runs} inputs"),
            Err(e) => panic!("{e}"),
        }
    }
}
