//! Hint replay: hands held writes to their owner as soon as the failure detector sees it
//! up, in acknowledged batches, one batch in flight per target (backpressure). A hint is
//! deleted only after its target acknowledged it, so replay resumes after any restart.

use crate::batch::item_bytes;
use crate::call::{CallError, MergeMany};
use crate::network::Priority;
use crate::rpc::Item;
use crate::server::Node;
use crate::stats::Stats;
use crate::transport::TransportError;
use crate::worker::{Worker, WorkerError, WorkerState};
use tokio::sync::watch;

/// Hint replay as a background worker: a pass over every live target with hints, then a
/// wait for a member to come up, a new hint, or the retry period. Switched off, it is done
/// at once and says so.
pub(crate) struct HintReplay {
    node: Node,
    changes: watch::Receiver<u64>,
    /// Hints delivered by the last pass, and those still held for any target.
    delivered: u64,
    held: u64,
    targets: usize,
}

impl HintReplay {
    pub(crate) fn new(node: Node) -> HintReplay {
        let changes = node.inner.members.subscribe();
        HintReplay {
            node,
            changes,
            delivered: 0,
            held: 0,
            targets: 0,
        }
    }
}

impl Worker for HintReplay {
    fn name(&self) -> &'static str {
        "hint-replay"
    }

    fn progress(&self) -> String {
        if !self.node.inner.cfg.hinted_handoff.enabled {
            return "off (hinted_handoff.enabled = false)".into();
        }
        format!(
            "{} hints held for {} nodes; last pass delivered {}",
            self.held, self.targets, self.delivered
        )
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        let node = &self.node;
        if !node.inner.cfg.hinted_handoff.enabled {
            return Ok(WorkerState::Done);
        }
        self.delivered = 0;
        let mut errors = Vec::new();
        let pending = node.inner.hints.pending();
        let members = &node.inner.members;
        let due = chorus_core::hints::due(pending.iter().map(|(t, c)| (t.as_str(), *c)), |t| {
            members.is_up(t)
        });
        for target in due {
            let sent = node.replay(target).await;
            self.delivered += sent.hints;
            errors.extend(sent.error);
        }
        for target in pending.keys() {
            metrics::gauge!("chorus_hints_pending", "target" => target.clone())
                .set(node.inner.hints.pending_for(target) as f64);
        }
        let pending = node.inner.hints.pending();
        self.held = pending.values().sum();
        self.targets = pending.values().filter(|c| **c > 0).count();
        // A target that is down is not a failure: the hints wait for it.
        if errors.is_empty() {
            Ok(WorkerState::Idle)
        } else {
            Err(errors.join("; ").into())
        }
    }

    async fn wait_for_work(&mut self) {
        // A peer coming up, a new hint, or (for hints a live peer didn't take) a retry.
        tokio::select! {
            _ = self.changes.changed() => {}
            _ = self.node.inner.handoff_kick.notified() => {}
            _ = tokio::time::sleep(self.node.inner.cfg.hinted_handoff.retry) => {}
        }
    }
}

impl Node {
    /// Sends `target` its hints until none are left or it stops acknowledging.
    async fn replay(&self, target: &str) -> Sent {
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
        sent
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
                        sent.error = Some(format!("reading hints for {target}: {e}"));
                        return;
                    }
                    Err(e) => {
                        sent.error = Some(format!("reading hints for {target}: {e}"));
                        return;
                    }
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
            match self
                .call(target, MergeMany(items), deadline, Priority::Background)
                .await
            {
                Ok(()) => {
                    let hints = self.inner.hints.clone();
                    let t = target.to_string();
                    let removed = tokio::task::spawn_blocking(move || hints.remove(&t, keys)).await;
                    if !matches!(removed, Ok(Ok(()))) {
                        tracing::error!(%target, "could not delete delivered hints; they will be sent again");
                        sent.error = Some(format!("could not delete hints delivered to {target}"));
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
                // Unreachable or slow: the failure detector and the retry take care of it.
                Err(CallError::Transport(
                    e @ (TransportError::Connect { .. }
                    | TransportError::Address { .. }
                    | TransportError::Timeout { .. }),
                )) => {
                    tracing::debug!(%target, error = %e, "hint replay failed; will retry");
                    return;
                }
                // The peer refused the hints, or took the connection but not the message
                // (too large, malformed).
                Err(e) => {
                    tracing::warn!(%target, hints = n, bytes, error = %e, "hint replay refused; will retry");
                    sent.error = Some(format!("{target} refused hints: {e}"));
                    return;
                }
            }
        }
    }
}

/// What one replay delivered, and why it stopped early if it failed.
#[derive(Default)]
struct Sent {
    hints: u64,
    bytes: u64,
    batches: u64,
    error: Option<String>,
}
