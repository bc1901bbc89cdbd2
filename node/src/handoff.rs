//! Hint replay: hands held writes to their owner as soon as the failure detector sees it
//! up, in acknowledged batches, one batch in flight per target (backpressure). A hint is
//! deleted only after its target acknowledged it, so replay resumes after any restart.

use crate::batch::item_bytes;
use crate::rpc::{Item, PeerRequest, PeerResponse};
use crate::server::Node;
use crate::stats::Stats;
use crate::transport::{Priority, TransportError};

impl Node {
    pub(crate) async fn handoff_loop(self) {
        let retry = self.inner.cfg.hinted_handoff.retry;
        let mut changes = self.inner.members.subscribe();
        loop {
            for (target, count) in self.inner.hints.pending() {
                if count > 0 && self.inner.members.is_up(&target) {
                    self.replay(&target).await;
                }
                metrics::gauge!("chorus_hints_pending", "target" => target.clone())
                    .set(self.inner.hints.pending_for(&target) as f64);
            }
            // A peer coming up, a new hint, or (for hints a live peer didn't take) a retry.
            tokio::select! {
                _ = changes.changed() => {}
                _ = self.inner.handoff_kick.notified() => {}
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Sends `target` its hints until none are left or it stops acknowledging.
    async fn replay(&self, target: &str) {
        let started = std::time::Instant::now();
        let mut sent = Sent::default();
        self.replay_batches(target, &mut sent).await;
        if sent.hints > 0 {
            tracing::info!(
                %target,
                delivered = sent.hints,
                bytes = sent.bytes,
                batches = sent.batches,
                ms = started.elapsed().as_millis() as u64,
                left = self.inner.hints.pending_for(target),
                "hint replay"
            );
        }
    }

    async fn replay_batches(&self, target: &str, sent: &mut Sent) {
        let batch_size = self.inner.cfg.hinted_handoff.batch;
        let max_bytes = self.inner.cfg.limits.batch_bytes();
        let deadline = self.inner.cfg.timeouts.request * 2;
        loop {
            let hints = self.inner.hints.clone();
            let t = target.to_string();
            let batch =
                match tokio::task::spawn_blocking(move || hints.batch(&t, batch_size, max_bytes))
                    .await
                {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        tracing::error!(%target, error = %e, "reading hints failed");
                        return;
                    }
                    Err(_) => return,
                };
            let (batch, expired) = batch;
            if expired > 0 {
                Stats::add(
                    &self.inner.stats.hints_expired,
                    "chorus_hints_expired_total",
                    expired,
                );
                tracing::info!(%target, expired, "dropped expired hints");
            }
            if batch.is_empty() {
                return;
            }
            let (keys, items): (Vec<Vec<u8>>, Vec<Item>) = batch
                .into_iter()
                .map(|(k, h)| {
                    (
                        k,
                        Item {
                            bucket: h.bucket,
                            key: h.key,
                            object: h.object,
                        },
                    )
                })
                .unzip();
            let n = items.len() as u64;
            let bytes: usize = items.iter().map(item_bytes).sum();
            let req = PeerRequest::MergeMany(items);
            match self
                .call_peer_metered(target, &req, deadline, Priority::Background)
                .await
            {
                Ok((PeerResponse::Ack, _)) => {
                    let hints = self.inner.hints.clone();
                    let t = target.to_string();
                    let removed = tokio::task::spawn_blocking(move || hints.remove(&t, keys)).await;
                    if !matches!(removed, Ok(Ok(()))) {
                        tracing::error!(%target, "could not delete delivered hints; they will be sent again");
                        return;
                    }
                    Stats::add(
                        &self.inner.stats.hints_replayed,
                        "chorus_hints_replayed_total",
                        n,
                    );
                    sent.hints += n;
                    sent.bytes += bytes as u64;
                    sent.batches += 1;
                }
                Ok((other, _)) => {
                    tracing::warn!(%target, hints = n, bytes, ?other, "hint replay refused; will retry");
                    return;
                }
                // Unreachable or slow: the failure detector and the retry take care of it.
                Err(
                    e @ (TransportError::Connect { .. }
                    | TransportError::Address { .. }
                    | TransportError::Timeout { .. }),
                ) => {
                    tracing::debug!(%target, error = %e, "hint replay failed; will retry");
                    return;
                }
                // The peer took the connection but not the message (too large, malformed).
                Err(e) => {
                    tracing::warn!(%target, hints = n, bytes, error = %e, "hint replay refused; will retry");
                    return;
                }
            }
        }
    }
}

/// What one replay delivered.
#[derive(Default)]
struct Sent {
    hints: u64,
    bytes: u64,
    batches: u64,
}
