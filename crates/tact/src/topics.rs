//! `tact topics create`: every topic tact needs, with the partitions and settings it relies on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tact_kafka::admin::{self, Created, TopicSpec};
use tact_kafka::rdkafka::consumer::BaseConsumer;
use tact_kafka::{consumer_config, Membership};
use tact_runtime::config::Settings;

pub struct CreateOptions<'a> {
    pub config: Option<&'a Path>,
    pub insights_config: Option<&'a Path>,
    pub partitions: i32,
    pub replication: i32,
    pub dry_run: bool,
}

fn describe(spec: &TopicSpec) -> String {
    let configs: Vec<String> = spec
        .configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{:<32} {:>3} partitions  replication {}  {}{}",
        spec.name,
        spec.partitions,
        spec.replication,
        spec.purpose,
        if configs.is_empty() {
            String::new()
        } else {
            format!("\n{:<32} {}", "", configs.join(" "))
        }
    )
}

pub fn cmd_create(o: &CreateOptions<'_>) -> ExitCode {
    let settings = match Settings::load_from_process(o.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let lane = match o.insights_config {
        None => None,
        Some(path) => match tact_insights::InsightsSettings::load_from_process(Some(path)) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    if o.partitions < 1 || o.replication < 1 {
        eprintln!("error: --partitions and --replication must be at least 1");
        return ExitCode::from(2);
    }
    tact_telemetry::init_logs("warn", false);
    let k = &settings.kafka;
    let consumer: BaseConsumer =
        match consumer_config(&k.bootstrap_servers, &Membership::Reader, &k.client).create() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot create a Kafka client: {e}");
                return ExitCode::from(3);
            }
        };
    let clickstream = settings.topics.clickstream.as_str();
    let existing = match admin::partition_counts(&consumer, &[clickstream], Duration::from_secs(10))
    {
        Ok(c) => c,
        Err(e) if o.dry_run => {
            eprintln!(
                "note: cannot reach {} ({e}); showing what would be created",
                k.bootstrap_servers
            );
            BTreeMap::new()
        }
        Err(e) => {
            eprintln!("error: cannot reach Kafka at {}: {e}", k.bootstrap_servers);
            return ExitCode::from(3);
        }
    };
    // An existing clickstream decides the count of everything partitioned like it.
    let partitions = existing
        .get(clickstream)
        .copied()
        .flatten()
        .map_or(o.partitions, |n| i32::try_from(n).unwrap_or(o.partitions));
    if partitions != o.partitions {
        println!("{clickstream} exists with {partitions} partitions: everything partitioned like it gets {partitions}");
    }
    let mut specs = tact_runtime::service::topic_specs(&settings, partitions, o.replication);
    if let Some(l) = &lane {
        for spec in tact_insights::topic_specs(
            l,
            partitions,
            o.replication,
            tact_runtime::service::changelog_configs(),
        ) {
            if !specs.iter().any(|s| s.name == spec.name) {
                specs.push(spec);
            }
        }
    }
    if o.dry_run {
        println!("would create (existing topics are checked, not changed):");
        for spec in &specs {
            println!("  {}", describe(spec));
        }
        return ExitCode::SUCCESS;
    }
    let results = match admin::create_topics(
        &k.bootstrap_servers,
        &k.client,
        &specs,
        Duration::from_secs(30),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let mut problems = Vec::new();
    for (name, result) in &results {
        match result {
            Ok(Created::Created) => {
                if let Some(spec) = specs.iter().find(|s| &s.name == name) {
                    println!("created  {}", describe(spec));
                }
            }
            Ok(Created::Existed) => {}
            Err(e) => problems.push(format!("{name}: the broker refused to create it: {e}")),
        }
    }
    // Existing topics: partitioned like the clickstream where that matters, the changelogs
    // compacted.
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let counts =
        admin::partition_counts(&consumer, &names, Duration::from_secs(10)).unwrap_or_default();
    let compacted: Vec<&str> = specs
        .iter()
        .filter(|s| {
            s.configs
                .iter()
                .any(|(k, v)| k == "cleanup.policy" && v == "compact")
        })
        .map(|s| s.name.as_str())
        .collect();
    let configs = admin::topic_configs(
        &k.bootstrap_servers,
        &k.client,
        &compacted,
        Duration::from_secs(10),
    )
    .unwrap_or_default();
    for (name, result) in &results {
        if !matches!(result, Ok(Created::Existed)) {
            continue;
        }
        let Some(spec) = specs.iter().find(|s| &s.name == name) else {
            continue;
        };
        let have = counts.get(name).copied().flatten().unwrap_or(0);
        if spec.co_partitioned && i32::try_from(have).unwrap_or(0) != partitions {
            problems.push(format!(
                "{name} exists with {have} partitions; it must have {partitions} (like {clickstream})"
            ));
            continue;
        }
        if compacted.contains(&name.as_str()) {
            let policy = configs
                .get(name)
                .cloned()
                .flatten()
                .and_then(|c| c.get("cleanup.policy").cloned());
            if policy.as_deref().is_none_or(|p| !p.contains("compact")) {
                problems.push(format!(
                    "{name} exists without cleanup.policy=compact (it has {}); set it: kafka-configs --alter --entity-type topics --entity-name {name} --add-config cleanup.policy=compact",
                    policy.as_deref().unwrap_or("nothing reported")
                ));
                continue;
            }
        }
        println!("exists   {name} ({have} partitions): ok");
    }
    if problems.is_empty() {
        println!("every topic is there");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        ExitCode::from(3)
    }
}
