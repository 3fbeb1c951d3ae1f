//! Produces a generated clickstream (and its consent commands) to a broker, paced to a rate.

use crate::generator::{Generated, Generator};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tact_codec::{encode_click, encode_command, InputFormat};
use tact_kafka::rdkafka::config::ClientConfig;
use tact_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tact_kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};

#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub bootstrap: String,
    pub clickstream_topic: String,
    pub commands_topic: String,
    pub click_format: InputFormat,
    pub command_format: InputFormat,
    /// Events per second; `None` as fast as the broker takes them.
    pub rate: Option<u64>,
    pub max_events: Option<u64>,
    pub max_duration: Option<Duration>,
}

/// Sends until a limit is reached or `stop` is set; calls `progress(records_sent)` now and then.
/// Returns the number of records sent (clicks and commands).
pub fn feed(
    generator: Generator,
    opts: &FeedOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64),
) -> Result<u64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap)
        .set("linger.ms", "10")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| format!("cannot create a producer for {}: {e}", opts.bootstrap))?;
    let started = Instant::now();
    let mut sent: u64 = 0;
    for item in generator {
        if stop.load(Ordering::Relaxed)
            || opts.max_events.is_some_and(|m| sent >= m)
            || opts.max_duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        if let Some(rate) = opts.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let (topic, payload) = match &item {
            Generated::Click(e) => (
                &opts.clickstream_topic,
                encode_click(e, opts.click_format, 1),
            ),
            Generated::Command(c) => (
                &opts.commands_topic,
                encode_command(c, opts.command_format, 2),
            ),
        };
        let key = item.customer_id().to_owned();
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(format!("cannot produce to {topic}: {e}")),
            }
        }
        sent += 1;
        if sent.is_multiple_of(1000) {
            progress(sent);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("records not acknowledged by {}: {e}", opts.bootstrap))?;
    progress(sent);
    Ok(sent)
}
