//! What the edge needs to know from a job's validated configuration.

use std::collections::BTreeMap;
use std::time::Duration;

/// An input topic and the label its metrics carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub label: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Static membership (`group.instance.id`): a restart within the session timeout keeps the
    /// partitions and needs no restore. `None`: dynamic membership.
    pub instance_id: Option<String>,
    /// librdkafka passthrough (TLS, SASL, tuning), applied before tact's safety keys.
    pub client: BTreeMap<String, String>,
    /// The topic whose partitions the group assigns.
    pub driving: Topic,
    /// Topics partitioned like the driving one; partition p follows the driving partition p.
    pub co_partitioned: Vec<Topic>,
    /// A topic every instance reads in full.
    pub global: Option<Topic>,
    /// The compacted changelog, partitioned like the driving topic.
    pub changelog: String,
    /// Topics the job produces to (they must exist).
    pub outputs: Vec<String>,
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub commit_interval: Duration,
    pub shutdown_deadline: Duration,
    /// How long a revoked partition may take to get its output acknowledged before it is let go.
    pub revoke_deadline: Duration,
    /// With no input for this long, the job's idle work runs (`None`: never).
    pub idle_after: Option<Duration>,
    /// Records produced and not yet acknowledged beyond which no new input is polled.
    pub max_in_flight: usize,
    /// ... or beyond this many bytes of them (keys and values): what bounds the memory of a
    /// process whose broker stalls.
    pub max_in_flight_bytes: usize,
    /// Partitions this store holds data of but the group did not give back are dropped this long
    /// after the first assignment.
    pub orphan_grace: Duration,
    /// Refuse a changelog the broker does not report as compacted (the embedded demo broker
    /// cannot describe topic configs).
    pub require_compaction: bool,
    /// How long to keep trying to reach the cluster at start.
    pub connect_timeout: Duration,
}

impl EdgeSettings {
    /// Every input topic: driving, co-partitioned, global.
    pub fn inputs(&self) -> Vec<&Topic> {
        std::iter::once(&self.driving)
            .chain(&self.co_partitioned)
            .chain(&self.global)
            .collect()
    }
}
