//! "What do you know about me, and why": one customer's state, explained item by item with its
//! provenance. The answer to a subject access request, served by `tact inspect` and by the
//! admin endpoint, so both say exactly the same.
//!
//! Provenance values: `stated` (the customer told us), `surveyed` (a survey answer),
//! `inferred` (learned from the listed events), `gift_recorded` (bought or looked at for a
//! recipient), `consent` (with its source and time), `session_only` (dropped at session end).

use crate::pipeline::envelope;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tact_core::{pending_timers, CustomerState, Policy, Timestamp};
use tact_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tact_kafka::rdkafka::error::KafkaError;
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{consumer_config, Membership};
use tact_store::{StateKey, StateStore};

/// RFC 3339 UTC (milliseconds when out of range).
fn at(t: Timestamp) -> Value {
    chrono::DateTime::from_timestamp_millis(t.millis()).map_or_else(
        || json!(t.millis()),
        |d| json!(d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
    )
}

/// The explained view of `state` (`None`: nothing is held).
pub fn explain(customer_id: &str, state: Option<&CustomerState>, policy: &Policy) -> Value {
    let Some(s) = state.filter(|s| !s.is_empty()) else {
        return json!({ "customer_id": customer_id, "known": false, "state": null });
    };
    let p = &s.preferences;
    let mut interests: Vec<Value> = Vec::new();
    for c in &p.stated_interests {
        interests.push(json!({ "category": c, "provenance": "stated" }));
    }
    for (question, answer) in &p.survey_answers {
        interests.push(json!({ "question": question, "answer": answer, "provenance": "surveyed" }));
    }
    for c in &s.interests {
        interests.push(json!({
            "category": c.category,
            "provenance": "inferred",
            "views": c.views,
            "last_seen": at(c.last_viewed_at),
            "products": c.recent_products,
            "from_events": c.evidence,
        }));
    }
    let purchases: Vec<Value> = s
        .purchases
        .iter()
        .map(|b| {
            json!({
                "product_id": b.product_id, "category": b.category,
                "at": at(b.at), "provenance": "inferred",
            })
        })
        .collect();
    let recipients: Vec<Value> = s
        .recipients
        .iter()
        .map(|r| {
            json!({
                "recipient_id": r.recipient_id,
                "name": r.name,
                "birthday": r.birthday,
                "interests": r.interests.iter().map(|c| json!({"category": c, "provenance": "stated"})).collect::<Vec<_>>(),
                "added_at": at(r.added_at),
                "gifts": r.gifts.iter().map(|g| json!({
                    "product_id": g.product_id, "category": g.category, "at": at(g.at),
                    "provenance": "gift_recorded", "from_event": g.event_id,
                })).collect::<Vec<_>>(),
                "looked_at_for_them": r.viewed.iter().map(|c| json!({
                    "category": c.category, "products": c.recent_products,
                    "provenance": "gift_recorded", "from_events": c.evidence,
                })).collect::<Vec<_>>(),
                "reminded_for_year": r.reminded_year,
            })
        })
        .collect();
    let consent: Vec<Value> = s
        .consents
        .iter()
        .map(|c| {
            json!({
                "purpose": c.purpose.as_str(),
                "channel": c.channel.map_or("all", |ch| ch.as_str()),
                "granted": c.granted,
                "source": c.source,
                "at": at(c.at),
                "expires_at": c.expires_at.map(at),
            })
        })
        .collect();
    let session = s.session.as_ref().map(|x| {
        json!({
            "provenance": "session_only",
            "session_id": x.id,
            "started_at": at(x.started_at),
            "last_event_at": at(x.last_event_at),
            "events": x.events,
            "categories_viewed": x.category_views.iter().map(|c| json!({
                "category": c.category, "views": c.views, "products": c.recent_products,
                "from_events": c.evidence,
            })).collect::<Vec<_>>(),
            "faq_deep_reads": x.faq_deep_reads,
            "failed_searches": x.search_failures,
            "checkout_returns": x.checkout_returns,
            "comparing": x.pingpong.as_ref().map(|pp| json!({"category": pp.category, "products": pp.products})),
            "proposed": x.proposed.iter().map(|(k, subject)| json!({"kind": k.as_str(), "about": subject})).collect::<Vec<_>>(),
            "trail": s.trail.as_ref().filter(|t| t.session_id == x.id).map(|t| json!({
                "pages": t.pages.iter().map(|p| &p.page).collect::<Vec<_>>(),
                "searches": t.searches.iter().map(|q| json!({"query": q.query, "results": q.results})).collect::<Vec<_>>(),
                "dismissals": t.dismissals,
            })),
        })
    });
    let cart = s.cart.as_ref().map(|c| {
        json!({
            "items": c.items.iter().map(|i| json!({"product_id": i.product_id, "category": i.category})).collect::<Vec<_>>(),
            "last_added_at": at(c.last_added_at),
            "from_event": c.last_added_event,
            "reminded": c.nudged,
        })
    });
    let timers: Vec<Value> = pending_timers(s, policy)
        .into_iter()
        .map(|t| json!({ "kind": t.kind, "due": at(t.due), "about": t.about }))
        .collect();
    json!({
        "customer_id": customer_id,
        "known": true,
        "first_seen": s.first_seen.map(at),
        "last_seen": s.last_event_at.map(at),
        "visits": s.visits,
        "consent": consent,
        "preferences": {
            "provenance": "stated",
            "suggestions": match p.suggestions_enabled { Some(true) => "on", Some(false) => "off", None => "on (default)" },
            "excluded_categories": p.excluded_categories,
            "private_categories": p.private_categories,
            "disabled_kinds": p.disabled_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            "disabled_channels": p.disabled_channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "time_zone": p.time_zone,
        },
        "interests": interests,
        "purchases": purchases,
        "cart": cart,
        "gift_mode": s.gift_mode.as_ref().map(|g| json!({
            "recipient_id": g.recipient_id, "until": g.until.map(at),
            "for_session": g.session_id,
        })),
        "recipients": recipients,
        "follows": s.follows.iter().map(|f| json!({"subject": f, "provenance": "stated"})).collect::<Vec<_>>(),
        "session_only": session,
        "contact_history": s.history.iter().map(|h| json!({
            "kind": h.kind.as_str(), "channel": h.channel.as_str(), "at": at(h.at),
        })).collect::<Vec<_>>(),
        "backoff": s.backoff.iter().map(|b| json!({
            "kind": b.kind.as_str(), "dismissals": b.dismissals, "until": at(b.until),
        })).collect::<Vec<_>>(),
        "open_callbacks": s.callbacks.iter().map(|c| json!({
            "decision_id": c.decision_id, "product_id": c.product_id,
            "requested_at": at(c.requested_at), "due_at": at(c.due_at), "escalated": c.escalated,
        })).collect::<Vec<_>>(),
        "gifted": s.gifted.iter().map(|g| json!({"product_id": g, "provenance": "bought as a gift: never shown as the customer's own interest"})).collect::<Vec<_>>(),
        "pending_timers": timers,
        "state": s,
    })
}

/// Reads and explains one customer from a state directory (whichever of its partitions holds
/// them): `Ok(None)` when nothing is held here.
pub fn lookup<S: StateStore + ?Sized>(
    store: &S,
    customer_id: &str,
    policy: &Policy,
) -> Result<Option<Value>, String> {
    let key = StateKey::Customer(customer_id.to_owned());
    let partitions = store.partitions().map_err(|e| e.to_string())?;
    let keys: Vec<(i32, &StateKey)> = partitions.iter().map(|p| (*p, &key)).collect();
    let found = store
        .multi_get(&keys)
        .map_err(|e| e.to_string())?
        .into_iter()
        .zip(&partitions)
        .find_map(|(v, p)| v.map(|v| (*p, v)));
    let Some((partition, bytes)) = found else {
        return Ok(None);
    };
    explain_stored(customer_id, partition, &bytes, policy).map(Some)
}

fn explain_stored(
    customer_id: &str,
    partition: i32,
    bytes: &[u8],
    policy: &Policy,
) -> Result<Value, String> {
    let (_, state) = envelope::decode(bytes)?;
    let mut v = explain(customer_id, Some(&state), policy);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("partition".into(), json!(partition));
    }
    Ok(v)
}

/// Reads and explains one customer from the changelog topic, whichever instance owns their
/// partition (and if none does): every partition is read to its end, which costs a read of the
/// whole (compacted) changelog. `Ok(None)` when nothing is held.
pub fn lookup_changelog(
    bootstrap: &str,
    client: &BTreeMap<String, String>,
    changelog: &str,
    customer_id: &str,
    policy: &Policy,
    timeout: Duration,
) -> Result<Option<Value>, String> {
    let consumer: BaseConsumer = consumer_config(bootstrap, &Membership::Reader, client)
        .set("enable.partition.eof", "true")
        .set("client.id", "tact-inspect")
        .create()
        .map_err(|e| format!("cannot create a consumer for {bootstrap}: {e}"))?;
    let md = consumer
        .fetch_metadata(Some(changelog), Duration::from_secs(10))
        .map_err(|e| format!("cannot reach Kafka at {bootstrap}: {e}"))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == changelog && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!(
            "the changelog topic {changelog} does not exist on {bootstrap}"
        ));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(changelog, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let wanted = tact_edge::changelog_state_key(&StateKey::Customer(customer_id.to_owned()));
    let mut pending: BTreeSet<i32> = partitions.into_iter().collect();
    let mut latest: Option<(i32, Option<Vec<u8>>)> = None;
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "the changelog {changelog} was not read to its end within {}s (partitions {pending:?} left)",
                timeout.as_secs()
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(format!("cannot read the changelog {changelog}: {e}")),
            Some(Ok(m)) if m.key() == Some(wanted.as_slice()) => {
                latest = Some((m.partition(), m.payload().map(<[u8]>::to_vec)));
            }
            Some(Ok(_)) => {}
        }
    }
    match latest {
        Some((partition, Some(bytes))) => {
            explain_stored(customer_id, partition, &bytes, policy).map(Some)
        }
        // Never written, or deleted last (an erasure's tombstone).
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tact_core::state::{CategoryInterest, ConsentRecord};
    use tact_core::Purpose;

    #[test]
    fn every_item_says_where_it_came_from() {
        let mut s = CustomerState::default();
        s.preferences.stated_interests = vec!["books".into()];
        s.preferences.survey_answers = vec![("genre".into(), "crime".into())];
        s.interests = vec![CategoryInterest {
            category: "shoes".into(),
            views: 3,
            last_viewed_at: Timestamp(1_772_445_600_000),
            recent_products: vec!["boot-1".into()],
            evidence: vec!["e9".into(), "e4".into()],
        }];
        s.consents = vec![ConsentRecord {
            purpose: Purpose::Personalization,
            channel: None,
            granted: true,
            source: "consent_banner".into(),
            at: Timestamp(1_772_445_600_000),
            expires_at: None,
        }];
        let v = explain("c1", Some(&s), &Policy::default());
        let interests = v["interests"].as_array().expect("interests");
        assert_eq!(interests[0]["provenance"], "stated");
        assert_eq!(interests[1]["provenance"], "surveyed");
        assert_eq!(interests[2]["provenance"], "inferred");
        assert_eq!(interests[2]["from_events"], json!(["e9", "e4"]));
        assert_eq!(v["consent"][0]["source"], "consent_banner");
        assert_eq!(v["consent"][0]["at"], "2026-03-02T10:00:00.000Z");
        assert_eq!(v["pending_timers"][0]["kind"], "interest_retention");
        assert_eq!(
            explain("c2", None, &Policy::default())["known"],
            json!(false)
        );
    }
}
