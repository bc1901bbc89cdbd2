//! Drives a client write (put or delete) on its coordinator: routes it (coordinate here or
//! forward, [`chorus_core::plan::route_write`]), charges the budgets, applies it locally
//! (the new version's dot is this node's), then runs
//! [`chorus_core::put::PutCoordinator`]: carries out its `Replicate` and `StoreHint`
//! messages and local hints, feeds it the answers, the nodes the failure detector marks
//! down and its deadline (tokio's clock as a `Duration` since the write began), and tells
//! the client its reply. The replication outlives the reply until every message is answered.

use std::sync::Arc;
use std::time::Duration;

use chorus_client::proto::{ErrorKind, Level, Request, Response};
use chorus_core::plan::{route_write, Plan, WriteRoute};
use chorus_core::put::{PutAction, PutCoordinator, PutOptions, PutReply};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::budget::{Charge, Exhausted};
use crate::call::{PeerCall, Replicate, StoreHint};
use crate::client_api::quorum_error;
use crate::network::Priority;
use crate::node::Node;
use crate::replica::{Change, ReplicaError};
use crate::rpc::{Item, PeerError};
use crate::storage::data_key;
use crate::version::Dot;

impl Node {
    pub(crate) async fn write(&self, w: Write, forwarded: bool) -> Response {
        let plan = match self.plan(&w.bucket, &w.key, w.w) {
            Ok(p) => p,
            Err(e) => return Response::Error(e),
        };
        let handoff = self.inner.cfg.hinted_handoff.enabled;
        if w.sloppy && !handoff {
            return Response::error(
                ErrorKind::BadRequest,
                "sloppy quorum needs hinted handoff, which is switched off (hinted_handoff.enabled = false)",
            );
        }
        let expires_ms = match self.expiry_of(&w) {
            Ok(e) => e,
            Err(why) => return Response::error(ErrorKind::BadRequest, why),
        };
        let ctx = match self.inner.contexts.open(&w.bucket, &w.key, &w.context) {
            Ok(c) => c,
            Err(e) => return Response::error(ErrorKind::BadRequest, e.to_string()),
        };
        let me = &self.inner.cfg.id;
        let is_up = |n: &str| self.inner.members.is_up(n);
        match route_write(&plan, me, self.coordinates_writes(), forwarded, is_up) {
            WriteRoute::Coordinate => {}
            WriteRoute::Forward(to) => {
                return self.forward(to, plan.needed, w.into_request()).await
            }
            WriteRoute::NotTakingWrites => {
                return Response::error(
                    ErrorKind::Unavailable,
                    PeerError::NotTakingWrites.to_string(),
                )
            }
            WriteRoute::RingMismatch => {
                return Response::error(
                    ErrorKind::Internal,
                    "forwarded write reached a node outside the preference list (ring mismatch)",
                )
            }
        }
        // Replica writes outlive the request; they hold a share of the fan-out budget until
        // they end. A write that would pass it is refused before anything is applied.
        let _at_key = match self.inner.budgets.keys.enter(
            &data_key(plan.partition, &w.bucket, &w.key),
            w.value.as_ref().map_or(0, Vec::len) + ITEM_OVERHEAD,
        ) {
            Ok(p) => p,
            Err(e) => return Response::error(ErrorKind::Overloaded, e.to_string()),
        };
        let mut fanout = match self.charge_fanout(&plan, &w) {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("chorus_overloaded_total", "what" => e.what).increment(1);
                return Response::error(ErrorKind::Overloaded, e.to_string());
            }
        };
        // The coordinator writes locally first: the new version's dot is its own.
        let obj = match self
            .inner
            .replica
            .apply(
                data_key(plan.partition, &w.bucket, &w.key),
                Change::Update {
                    ctx: ctx.clone(),
                    value: w.value,
                    expires_ms,
                },
            )
            .await
        {
            Ok(o) => o,
            Err(e @ ReplicaError::TooManySiblings { .. }) => {
                return Response::error(ErrorKind::BadRequest, e.to_string())
            }
            Err(e @ ReplicaError::TooLarge { .. }) => {
                return Response::error(ErrorKind::TooLarge, e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "local write failed");
                return Response::error(ErrorKind::Internal, format!("local write failed: {e}"));
            }
        };
        // The local write's dot is the highest of this node's actor in the result.
        let actor = self.inner.replica.actor();
        let dot = Dot::new(actor.clone(), obj.clock().get(actor));
        let new_context =
            self.inner
                .contexts
                .seal(&w.bucket, &w.key, &obj.written_context(&ctx, &dot));
        let item = Item {
            bucket: w.bucket,
            key: w.key,
            object: obj.encode(),
        };
        let fanout = {
            let per_replica = item_bytes(&item);
            self.inner.budgets.sizes.note(
                &data_key(plan.partition, &item.bucket, &item.key),
                item.object.len(),
            );
            let charged = fanout.bytes() / fanout.count().max(1);
            if per_replica > charged {
                // Larger than known before the write: admitted already, so the budget may
                // run over by this once; the next write to the key is charged in full.
                fanout.grow((per_replica - charged) * fanout.count());
            }
            Arc::new(fanout)
        };
        let options = PutOptions {
            sloppy: w.sloppy,
            handoff,
            deadline: self.inner.cfg.timeouts.request,
        };
        let mut machine = PutCoordinator::new(&plan, me, options);
        let origin = Instant::now();
        let first = machine.start(Duration::ZERO, is_up);
        let (reply_tx, reply_rx) = oneshot::channel();
        tokio::spawn(
            self.clone()
                .drive_put(machine, first, origin, item, fanout, reply_tx),
        );
        match reply_rx.await {
            Ok(PutReply::Met) => Response::Written {
                context: new_context,
            },
            Ok(PutReply::Failed { needed, answered }) => quorum_error("write", needed, answered),
            Err(_) => Response::error(ErrorKind::Internal, "write task failed"),
        }
    }

    /// Runs the write's replication until every message sent is answered; the client's
    /// reply goes to `reply` as soon as the machine decides.
    async fn drive_put(
        self,
        mut machine: PutCoordinator,
        mut actions: Vec<PutAction>,
        origin: Instant,
        item: Item,
        fanout: Arc<Charge>,
        reply: oneshot::Sender<PutReply>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, bool)>();
        let mut reply = Some(reply);
        let mut changes = self.inner.members.subscribe();
        loop {
            for action in std::mem::take(&mut actions) {
                match action {
                    PutAction::Replicate(node) => {
                        let req = Replicate(item.clone());
                        self.send_write(node.clone(), node, req, &tx, &fanout);
                    }
                    PutAction::StoreHint { via, target } => {
                        let req = StoreHint {
                            target: target.clone(),
                            item: item.clone(),
                        };
                        self.send_write(via, target, req, &tx, &fanout);
                    }
                    PutAction::Hint(node) => {
                        self.spawn_local_hint(node, item.clone(), fanout.clone())
                    }
                    PutAction::Reply(r) => {
                        if let Some(reply) = reply.take() {
                            let _ = reply.send(r);
                        }
                    }
                    PutAction::Finished => return,
                }
            }
            let next = machine.next_timer();
            tokio::select! {
                Some((node, ok)) = rx.recv() => {
                    actions = machine.on_answer(&node, ok, origin.elapsed());
                }
                _ = tokio::time::sleep_until(origin + next.unwrap_or_default()), if next.is_some() => {
                    actions = machine.on_timer(origin.elapsed());
                }
                Ok(()) = changes.changed(), if !machine.waiting_on().is_empty() => {
                    let now = origin.elapsed();
                    // A slot a stand-in serves fails when the stand-in goes down.
                    let down = self.down_among(machine.waiting_on());
                    for n in down {
                        actions.extend(machine.on_down(&n, now));
                    }
                }
            }
        }
    }

    /// Sends `req` to `to` for `replica`'s slot in its own task and reports whether it was
    /// acknowledged. Runs to completion even after the client has its answer, holding its
    /// share of the fan-out budget until then.
    fn send_write<C: PeerCall<Reply = ()> + Send + 'static>(
        &self,
        to: String,
        replica: String,
        req: C,
        tx: &mpsc::UnboundedSender<(String, bool)>,
        fanout: &Arc<Charge>,
    ) {
        let this = self.clone();
        let tx = tx.clone();
        let fanout = fanout.clone();
        let deadline = self.inner.cfg.timeouts.request;
        tokio::spawn(async move {
            let _fanout = fanout;
            let r = this.call(&to, req, deadline, Priority::Client).await;
            if let Err(e) = &r {
                tracing::debug!(%replica, via = %to, error = %e, "replica missed a write");
            }
            let _ = tx.send((replica, r.is_ok()));
        });
    }

    /// Charges the fan-out budget for a write: one slot and the write's size for each
    /// replica, this one included (its apply waits in the replica writer's queue, which this
    /// bounds), or the "overloaded" answer.
    fn charge_fanout(&self, plan: &Plan, w: &Write) -> Result<Charge, Exhausted> {
        let me = &self.inner.cfg.id;
        let copies = plan.write_targets().iter().filter(|n| *n != me).count() + 1;
        // The object replicated is the key's whole version: its siblings too, when known.
        let known = self
            .inner
            .budgets
            .sizes
            .get(&data_key(plan.partition, &w.bucket, &w.key));
        let size = known
            + w.value.as_ref().map_or(0, Vec::len)
            + w.key.len()
            + w.bucket.len()
            + w.context.len()
            + ITEM_OVERHEAD;
        self.inner.budgets.fanout.try_charge(copies, size * copies)
    }

    /// When a put expires: now (this coordinator's wall clock) plus its TTL, or the bucket's
    /// default TTL when it brings none. Deletes never expire. A TTL of zero or past
    /// [`chorus_client::proto::MAX_TTL`] is refused.
    fn expiry_of(&self, w: &Write) -> Result<Option<u64>, String> {
        let ttl = match w.ttl_ms {
            Some(ms) => {
                let ttl = Duration::from_millis(ms);
                chorus_client::proto::check_ttl(ttl)?;
                Some(ttl)
            }
            None => self.inner.cfg.ttl_for(&w.bucket),
        };
        Ok(match (&w.value, ttl) {
            (Some(_), Some(ttl)) => Some(crate::hints::now_ms().saturating_add(ttl_ms(ttl))),
            _ => None,
        })
    }

    fn spawn_local_hint(&self, target: String, item: Item, fanout: Arc<Charge>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _fanout = fanout;
            if let Err(e) = this.store_hint(&target, item).await {
                tracing::error!(replica = %target, error = %e, "could not store a hint");
            }
        });
    }
}

/// A put or delete, as the coordinator sees it.
pub(crate) struct Write {
    pub(crate) bucket: Vec<u8>,
    pub(crate) key: Vec<u8>,
    /// `None` deletes.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) context: Vec<u8>,
    pub(crate) w: Level,
    pub(crate) sloppy: bool,
    /// The TTL the client asked for, in milliseconds; `None` takes the bucket's default.
    pub(crate) ttl_ms: Option<u64>,
}

impl Write {
    fn into_request(self) -> Request {
        match self.value {
            Some(value) => Request::Put {
                bucket: self.bucket,
                key: self.key,
                value,
                context: self.context,
                w: self.w,
                sloppy: self.sloppy,
                ttl_ms: self.ttl_ms,
            },
            None => Request::Delete {
                bucket: self.bucket,
                key: self.key,
                context: self.context,
                w: self.w,
                sloppy: self.sloppy,
            },
        }
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    chorus_client::proto::ttl_millis(ttl)
}

/// Bytes a replica write holds beyond its object, key and bucket (request, frame, task).
pub(crate) const ITEM_OVERHEAD: usize = 256;

pub(crate) fn item_bytes(item: &Item) -> usize {
    item.object.len() + item.key.len() + item.bucket.len() + ITEM_OVERHEAD
}
