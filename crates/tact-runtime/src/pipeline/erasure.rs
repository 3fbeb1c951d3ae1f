//! Forgetting a customer on request, provably: their state is deleted in the call's commit (and
//! a tombstone goes to the changelog), what was decided about them and not yet sent is withdrawn
//! from the outbox, the deleted values are purged from the files after the commit, and a receipt
//! that names the request (not the person: by the digest of the command id) says what went.

use super::emitter::Emitter;
use tact_codec::Receipt;
use tact_core::state::ErasureReport;
use tact_core::{CommandBody, ProfileCommand};
use tact_edge::{decode_changelog_key, ChangelogEntry, Cx, JobError};
use tact_kafka::Kind;
use tact_store::{Partition, StateKey};

/// One erase command just applied.
pub struct Erased<'a> {
    pub partition: Partition,
    pub command: &'a ProfileCommand,
    /// What the state held before.
    pub report: ErasureReport,
    pub changelog: &'a str,
}

/// `sha256:` and the hex SHA-256 of `s`: what a requester computes from its own id to match.
pub fn digest(s: &str) -> String {
    format!("sha256:{}", tact_codec::sha256_hex(s.as_bytes()))
}

/// Whether `text` contains the customer id (ignoring case).
fn names(text: &str, customer_id: &str) -> bool {
    !customer_id.is_empty() && text.to_lowercase().contains(&customer_id.to_lowercase())
}

/// Withdraws the customer's unsent records (outputs of this call and of earlier ones still in
/// the outbox, and their pending changelog values), then emits the receipt.
pub fn erased(
    e: Erased<'_>,
    cx: &Cx<'_>,
    emitter: &mut Emitter,
    withdraw: &mut Vec<(Partition, u64)>,
) -> Result<(), JobError> {
    let p = e.partition;
    let id = e.command.customer_id.as_str();
    let receipts = emitter.topics().erasure_receipts.clone();
    let mut gone = emitter.withdraw(p, id.as_bytes(), &receipts);
    let customer = StateKey::Customer(id.to_owned());
    for pending in cx.pending(p)? {
        let theirs = match pending.kind {
            Kind::Output => pending.key == id.as_bytes() && pending.topic != receipts,
            // Their earlier state on its way to the changelog: the tombstone supersedes it.
            _ => decode_changelog_key(&pending.key) == ChangelogEntry::State(customer.clone()),
        };
        if theirs && !withdraw.contains(&(p, pending.seq)) {
            withdraw.push((p, pending.seq));
            if pending.kind == Kind::Output {
                gone += 1;
            }
        }
    }
    let mut report = e.report;
    report.pending_outputs = u32::try_from(gone).unwrap_or(u32::MAX);
    let metrics = emitter.metrics();
    metrics.erasures.inc();
    let erased_at = super::wall_clock().millis();
    metrics
        .erasure_lag
        .observe((erased_at - e.command.issued_at.millis()).max(0) as f64 / 1000.0);
    // A producer may build the command id (or the reference) from the customer id: the receipt,
    // and its copy in the outbox, would then keep the person in tact's files after the purge.
    // The receipt names the command by the digest of its id, and a reference that contains the
    // customer id by its digest too.
    let command_ref = digest(&e.command.command_id);
    let request_ref = match &e.command.body {
        CommandBody::Erase { request_ref } => request_ref.as_deref().map(|r| {
            if names(r, id) {
                digest(r)
            } else {
                r.to_owned()
            }
        }),
        _ => None,
    };
    let receipt = Receipt {
        command_id: &command_ref,
        request_ref: request_ref.as_deref(),
        requested_at_ms: e.command.issued_at.millis(),
        erased_at_ms: erased_at,
        removed: &report,
        purged: true,
        changelog: Some((e.changelog, p)),
    };
    emitter.receipt(p, &receipt);
    Ok(())
}
