//! Drives a client read through [`chorus_core::get::GetCoordinator`]: carries out its asks
//! (the local replica directly, others with a peer `Read`), feeds it their answers, the
//! replicas the failure detector marks down and its timers (tokio's clock as a `Duration`
//! since the read began), sends the client its reply, and hands the repair it decides on to
//! [`crate::read_repair`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chorus_client::proto::{ErrorKind, Level, Response};
use chorus_core::get::{GetAction, GetCoordinator, GetReply, GetTiming, ReadAnswer};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::call::{CallError, Held, Read};
use crate::client_api::read_quorum_error;
use crate::network::Priority;
use crate::node::Node;
use crate::storage::data_key;
use crate::version::Object;

/// Reads coordinated by this process, for `read_repair.chance`.
static READS: AtomicU64 = AtomicU64::new(0);

/// The key a read is about, as peers (bucket and key) and the local replica (storage key)
/// name it.
pub(crate) struct ReadKey {
    pub(crate) bucket: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) skey: Vec<u8>,
}

impl Node {
    pub(crate) async fn get(&self, bucket: Vec<u8>, key: Vec<u8>, r: Level) -> Response {
        let plan = match self.plan(&bucket, &key, r) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let cfg = &self.inner.cfg;
        let rr = &cfg.read_repair;
        // Every k-th read goes to all replicas, k = 1 / chance.
        let every = (1.0 / rr.chance).round().max(1.0) as u64;
        let full = rr.chance >= 1.0
            || (rr.chance > 0.0 && READS.fetch_add(1, Ordering::Relaxed).is_multiple_of(every));
        let timing = GetTiming {
            speculative_after: rr.speculative_after,
            deadline: cfg.timeouts.request,
            repair_window: rr.enabled.then_some(rr.window),
        };
        let mut machine = GetCoordinator::new(plan.pref, plan.needed, &cfg.id, full, timing)
            .with_conflicts(cfg.conflicts_for(&bucket));
        let origin = Instant::now();
        let first = machine.start(Duration::ZERO, |n| self.inner.members.is_up(n));
        let at = ReadKey {
            skey: data_key(plan.partition, &bucket, &key),
            bucket,
            key,
        };
        // The read runs in its own task: after the reply it keeps listening for late
        // answers, then repairs the replicas that were stale.
        let (reply_tx, reply_rx) = oneshot::channel();
        tokio::spawn(self.clone().drive_get(machine, first, origin, at, reply_tx));
        reply_rx
            .await
            .unwrap_or_else(|_| Response::error(ErrorKind::Internal, "read task failed"))
    }

    async fn drive_get(
        self,
        mut machine: GetCoordinator,
        mut actions: Vec<GetAction>,
        origin: Instant,
        at: ReadKey,
        reply: oneshot::Sender<Response>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, ReadAnswer)>();
        let mut reply = Some(reply);
        let mut changes = self.inner.members.subscribe();
        loop {
            for action in std::mem::take(&mut actions) {
                match action {
                    GetAction::Ask(node) => self.ask_replica(node, &at, &tx),
                    GetAction::Reply(r) => {
                        let resp = match r {
                            GetReply::Met(obj) => {
                                Response::Value(self.value_reply(&at.bucket, &at.key, obj.as_ref()))
                            }
                            GetReply::Failed {
                                needed,
                                answered,
                                recovering,
                            } => read_quorum_error(needed, answered, &recovering),
                        };
                        if let Some(reply) = reply.take() {
                            let _ = reply.send(resp);
                        }
                    }
                    GetAction::Repair { targets, merged } => {
                        self.read_repair(targets, merged, &at).await
                    }
                    GetAction::Finished => return,
                }
            }
            // Every phase but the end has a timer (the deadline or the repair window).
            let Some(next) = machine.next_timer() else {
                return;
            };
            tokio::select! {
                Some((node, answer)) = rx.recv() => {
                    actions = machine.on_answer(&node, answer, origin.elapsed());
                }
                _ = tokio::time::sleep_until(origin + next) => {
                    actions = machine.on_timer(origin.elapsed());
                }
                Ok(()) = changes.changed() => {
                    let now = origin.elapsed();
                    let down = self.down_among(machine.waiting_on());
                    for n in down {
                        actions.extend(machine.on_down(&n, now));
                    }
                }
            }
        }
    }

    /// Reads one replica's copy of a key in its own task and sends the answer to `tx`:
    /// the local replica directly, another through a peer `Read`.
    fn ask_replica(
        &self,
        node: String,
        at: &ReadKey,
        tx: &mpsc::UnboundedSender<(String, ReadAnswer)>,
    ) {
        let tx = tx.clone();
        if node == self.inner.cfg.id {
            if !self.is_whole() {
                let _ = tx.send((node, ReadAnswer::Recovering));
                return;
            }
            let replica = self.inner.replica.clone();
            let skey = at.skey.clone();
            tokio::spawn(async move {
                let answer = match replica.get(skey).await {
                    Ok(o) => ReadAnswer::Version(o),
                    Err(e) => {
                        tracing::debug!(%node, error = %e, "replica read failed");
                        ReadAnswer::Failed
                    }
                };
                let _ = tx.send((node, answer));
            });
        } else {
            let this = self.clone();
            let req = Read {
                bucket: at.bucket.clone(),
                key: at.key.clone(),
            };
            let deadline = self.inner.cfg.timeouts.request;
            tokio::spawn(async move {
                let answer = match this.call(&node, req, deadline, Priority::Client).await {
                    Ok(Held {
                        recovering: true, ..
                    }) => ReadAnswer::Recovering,
                    other => match object_answer(other) {
                        Ok(o) => ReadAnswer::Version(o),
                        Err(e) => {
                            tracing::debug!(%node, error = %e, "replica read failed");
                            ReadAnswer::Failed
                        }
                    },
                };
                let _ = tx.send((node, answer));
            });
        }
    }
}

/// A replica's answer to a `Read`: its version of the key (even from a recovering replica),
/// or why there is none.
pub(crate) fn object_answer(r: Result<Held, CallError>) -> Result<Option<Object>, String> {
    let held = r.map_err(|e| e.to_string())?;
    held.object
        .map(|b| Object::decode(&b))
        .transpose()
        .map_err(|e| e.to_string())
}
