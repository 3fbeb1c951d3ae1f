//! Topic administration: what the topics look like (partitions, configs), and creating the ones
//! tact needs with the settings it relies on. Used by `tact topics create` and by the checks at
//! start.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// A topic as tact wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic-level settings (`cleanup.policy`, compaction lags, retention).
    pub configs: Vec<(String, String)>,
    /// What it is for, as `tact topics create` prints it.
    pub purpose: String,
    /// Partition p of this topic belongs with partition p of the input: its count must match.
    pub co_partitioned: bool,
}

/// Partition counts of `names` (`None`: the topic does not exist).
pub fn partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    names: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, Option<usize>>, String> {
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| e.to_string())?;
    Ok(names
        .iter()
        .map(|name| {
            let count = md
                .topics()
                .iter()
                .find(|t| t.name() == *name && t.error().is_none())
                .map(|t| t.partitions().len())
                .filter(|n| *n > 0);
            ((*name).to_owned(), count)
        })
        .collect())
}

fn admin(
    bootstrap: &str,
    user: &BTreeMap<String, String>,
) -> Result<AdminClient<DefaultClientContext>, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in user {
        // Only connection settings matter to an admin client (TLS, SASL); consumer/producer
        // tuning would make it warn.
        if k.starts_with("ssl.")
            || k.starts_with("sasl.")
            || k == "security.protocol"
            || k.starts_with("socket.")
            || k == "client.id"
        {
            c.set(k, v);
        }
    }
    c.create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start a runtime for admin requests: {e}"))?;
    Ok(rt.block_on(f))
}

/// Topic-level configs the broker reports for `names` (a topic it does not describe maps to
/// `None`). Some brokers (tansu) report only what was set at creation.
pub fn topic_configs(
    bootstrap: &str,
    user: &BTreeMap<String, String>,
    names: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, Option<BTreeMap<String, String>>>, String> {
    let client = admin(bootstrap, user)?;
    let specs: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = block_on(client.describe_configs(specs.iter(), &opts))?
        .map_err(|e| format!("cannot describe topic configs: {e}"))?;
    Ok(names
        .iter()
        .zip(results)
        .map(|(name, r)| {
            let configs = r.ok().map(|res| {
                res.entries
                    .into_iter()
                    .filter_map(|e| e.value.map(|v| (e.name, v)))
                    .collect::<BTreeMap<String, String>>()
            });
            ((*name).to_owned(), configs)
        })
        .collect())
}

/// What creating one topic did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It existed already (idempotent re-runs).
    Existed,
}

/// Per topic, what creating it did or why the broker refused.
pub type CreateResults = Vec<(String, Result<Created, String>)>;

/// Creates every topic of `specs` that does not exist. Existing topics are left alone (the
/// caller checks their shape). Returns per topic what happened, or the broker's refusal.
pub fn create_topics(
    bootstrap: &str,
    user: &BTreeMap<String, String>,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<CreateResults, String> {
    let client = admin(bootstrap, user)?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            let mut t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            );
            for (k, v) in &s.configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = block_on(client.create_topics(new.iter(), &opts))?
        .map_err(|e| format!("cannot create topics: {e}"))?;
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(name) => (name, Ok(Created::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => (name, Ok(Created::Existed)),
            Err((name, code)) => (name, Err(code.to_string())),
        })
        .collect())
}
