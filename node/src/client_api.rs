//! The client protocol: one request in, one response out. Checks keys and values against
//! the limits, plans where a key lives, and dispatches to the read and write coordinators
//! ([`crate::coordinate_get`], [`crate::coordinate_put`]) or answers at once (ring, status,
//! membership changes, repair). Also what a client sees of a version (`value_reply`).

use std::time::Instant;

use chorus_client::proto::{
    ErrorKind, ErrorReply, Level, NodeStatus, Request, Response, RingInfo, StatusInfo,
    TransferStatus, ValueReply, WorkerInfo,
};
use chorus_core::plan::Plan;

use crate::call::Read;
use crate::coordinate_get::object_answer;
use crate::coordinate_put::Write;
use crate::membership::MemberState;
use crate::network::Priority;
use crate::node::Node;
use crate::version::{Conflicts, Object};

impl Node {
    /// Serves a client request. `forwarded` is set when another node handed it over, so it
    /// is never forwarded again.
    pub async fn handle_client(&self, req: Request, forwarded: bool) -> Response {
        let started = Instant::now();
        let op = op_name(&req);
        if !matches!(req, Request::Status | Request::Ring) {
            if let Some(why) = self.inner.identity.out_of_cluster() {
                return Response::error(ErrorKind::Unavailable, why);
            }
        }
        let resp = match req {
            Request::Get { bucket, key, r } => self.get(bucket, key, r).await,
            Request::Put {
                bucket,
                key,
                value,
                context,
                w,
                sloppy,
                ttl_ms,
            } => {
                if let Err(e) = self.check_value(&value) {
                    return Response::Error(e);
                }
                let write = Write {
                    bucket,
                    key,
                    value: Some(value),
                    context,
                    w,
                    sloppy,
                    ttl_ms,
                };
                self.write(write, forwarded).await
            }
            Request::Delete {
                bucket,
                key,
                context,
                w,
                sloppy,
            } => {
                let write = Write {
                    bucket,
                    key,
                    value: None,
                    context,
                    w,
                    sloppy,
                    ttl_ms: None,
                };
                self.write(write, forwarded).await
            }
            Request::GetMany { bucket, keys, r } => self.get_many(bucket, keys, r).await,
            Request::PutMany {
                bucket,
                items,
                w,
                sloppy,
                ttl_ms,
            } => self.put_many(bucket, items, w, sloppy, ttl_ms).await,
            Request::GetReplica { bucket, key, node } => self.get_replica(bucket, key, node).await,
            Request::Ring => match self.ring_info() {
                Some(info) => Response::Ring(info),
                None => Response::error(
                    ErrorKind::Unavailable,
                    (self.inner.identity.out_of_cluster()).unwrap_or_else(|| NOT_JOINED.into()),
                ),
            },
            Request::Leave { node, force } => {
                self.change_member(&node, MemberState::Leaving, force)
            }
            Request::Remove { node, force } => self.change_member(&node, MemberState::Left, force),
            Request::Status => Response::Status(self.status()),
            Request::ListKeys {
                bucket,
                prefix,
                limit,
                after,
            } => self.list_keys(bucket, prefix, limit, after).await,
            Request::Truncate { bucket } => self.truncate(bucket).await,
            Request::Repair => {
                if self.inner.cfg.anti_entropy.enabled {
                    self.inner.repair_now.notify_one();
                    Response::Ok
                } else {
                    Response::error(
                        ErrorKind::BadRequest,
                        "anti-entropy is switched off on this node (anti_entropy.enabled = false)",
                    )
                }
            }
        };
        let outcome = match &resp {
            Response::Error(e) => match e.kind {
                ErrorKind::Quorum { .. } => "quorum_failed",
                _ => "error",
            },
            _ => "ok",
        };
        metrics::counter!("chorus_requests_total", "op" => op, "outcome" => outcome).increment(1);
        metrics::histogram!("chorus_request_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        resp
    }

    /// Bytes of values and context a read reply may carry and still fit in a frame.
    pub(crate) fn reply_budget(&self) -> usize {
        self.inner
            .cfg
            .limits
            .max_frame_bytes
            .saturating_sub(REPLY_OVERHEAD)
    }

    pub(crate) fn check_key(&self, bucket: &[u8], key: &[u8]) -> Result<(), ErrorReply> {
        let l = &self.inner.cfg.limits;
        if key.is_empty() {
            return Err(reject(ErrorKind::BadRequest, "key is empty"));
        }
        if key.len() > l.max_key_bytes {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "key of {} bytes exceeds the limit of {} bytes (limits.max_key_bytes)",
                    key.len(),
                    l.max_key_bytes
                ),
            ));
        }
        if bucket.len() > l.max_bucket_bytes {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "bucket name of {} bytes exceeds the limit of {} bytes (limits.max_bucket_bytes)",
                    bucket.len(),
                    l.max_bucket_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        let max = self.inner.cfg.limits.max_value_bytes;
        if value.len() > max {
            return Err(reject(
                ErrorKind::TooLarge,
                format!(
                    "value of {} bytes exceeds the limit of {max} bytes (limits.max_value_bytes)",
                    value.len()
                ),
            ));
        }
        Ok(())
    }

    /// The key's partition, N and preference list, and the level resolved against N.
    /// While the partition moves to new owners, `pref` is the old replica set (which holds
    /// all of its data) and `also` the new one.
    pub(crate) fn plan(&self, bucket: &[u8], key: &[u8], level: Level) -> Result<Plan, ErrorReply> {
        self.check_key(bucket, key)?;
        let state = self.cluster();
        let ring = state
            .ring
            .as_ref()
            .ok_or_else(|| reject(ErrorKind::Unavailable, NOT_JOINED))?;
        let partition = self.partition_of(bucket, key);
        Plan::new(
            ring,
            state.moving(partition),
            partition,
            self.inner.cfg.n_for(bucket),
            |n| {
                level
                    .resolve(n)
                    .map_err(|e| reject(ErrorKind::BadRequest, e.to_string()))
            },
        )
    }

    async fn get_replica(&self, bucket: Vec<u8>, key: Vec<u8>, node: String) -> Response {
        if let Err(e) = self.check_key(&bucket, &key) {
            return Response::Error(e);
        }
        if !self.inner.members.state().members.contains_key(&node) {
            return Response::error(ErrorKind::BadRequest, format!("unknown node {node:?}"));
        }
        let (b, k) = (bucket.clone(), key.clone());
        let obj = if node == self.inner.cfg.id {
            self.inner
                .replica
                .get(self.storage_key(&bucket, &key))
                .await
                .map_err(|e| e.to_string())
        } else {
            let deadline = self.inner.cfg.timeouts.request;
            let req = Read { bucket, key };
            object_answer(self.call(&node, req, deadline, Priority::Client).await)
        };
        match obj {
            Ok(o) => Response::Value(self.value_reply(&b, &k, o.as_ref())),
            Err(e) => Response::error(ErrorKind::Internal, format!("reading {node}'s copy: {e}")),
        }
    }

    /// What a client sees of a version (or of its absence), with its sealed context. Values
    /// beyond the reply budget are left out and the reply says so (`truncated`): the context
    /// then covers only the values shown, so a write with it keeps the others as siblings.
    pub(crate) fn value_reply(
        &self,
        bucket: &[u8],
        key: &[u8],
        obj: Option<&Object>,
    ) -> ValueReply {
        let ctx = obj.map(Object::context).unwrap_or_default();
        let mut context = self.inner.contexts.seal(bucket, key, &ctx);
        // An lww bucket shows one value whatever was merged; expired values read as deleted
        // by this node's clock.
        let resolved = obj
            .filter(|o| {
                o.sibling_count() > 1 && self.inner.cfg.conflicts_for(bucket) == Conflicts::Lww
            })
            .map(|o| {
                let mut o = o.clone();
                o.resolve_lww();
                o
            });
        let obj = resolved.as_ref().or(obj);
        let now = crate::hints::now_ms();
        match obj {
            Some(o) => {
                let room = self.reply_budget().saturating_sub(context.len());
                let all = distinct(o.values_at(now));
                let total = all.len();
                let mut used = 0usize;
                let mut values = Vec::with_capacity(total);
                for v in all {
                    let cost = v.len() + VALUE_OVERHEAD;
                    if used + cost <= room {
                        used += cost;
                        values.push(serde_bytes::ByteBuf::from(v.to_vec()));
                    }
                }
                let truncated = values.len() < total;
                if truncated {
                    // The context covers only what the reply shows. Its single dots (a bounded
                    // few) fit in the room the reply keeps beyond its values.
                    let shown =
                        o.context_showing_at(now, |v| values.iter().any(|s| s.as_slice() == v));
                    context = self.inner.contexts.seal(bucket, key, &shown);
                }
                ValueReply {
                    found: o.is_found_at(now),
                    truncated,
                    values,
                    context,
                    // Expired values are counted with the tombstones: both read as deleted.
                    tombstones: o.dead_count_at(now) as u32,
                }
            }
            None => ValueReply {
                found: false,
                values: Vec::new(),
                context,
                tombstones: 0,
                truncated: false,
            },
        }
    }

    fn ring_info(&self) -> Option<RingInfo> {
        let cfg = &self.inner.cfg;
        let view = self.inner.members.view();
        let ring = self.cluster().ring.clone()?;
        Some(RingInfo {
            down: view
                .iter()
                .filter(|m| !m.up)
                .map(|m| m.id.clone())
                .collect(),
            ring,
            addresses: view.into_iter().map(|m| (m.id, m.address)).collect(),
            default_n: cfg.cluster.n,
            bucket_n: cfg.cluster.buckets_n(),
        })
    }

    fn status(&self) -> StatusInfo {
        let state = self.cluster();
        let shares = state
            .ring
            .as_ref()
            .map(|r| r.shares(self.inner.cfg.cluster.n))
            .unwrap_or_default();
        let hints = self.inner.hints.pending();
        let pending = state.pending();
        StatusInfo {
            node: self.inner.cfg.id.clone(),
            ring_version: state.ring.as_ref().map(|r| r.version()).unwrap_or(0),
            partitions: self.inner.cfg.cluster.partitions,
            transfers_pending: pending.len() as u64,
            ring_waits_for: state.unacknowledged(),
            transfers: pending
                .into_iter()
                .map(|(partition, node)| TransferStatus { partition, node })
                .collect(),
            nodes: self
                .inner
                .members
                .view()
                .into_iter()
                .map(|m| NodeStatus {
                    partitions: shares
                        .iter()
                        .find(|(id, _)| *id == m.id)
                        .map(|(_, c)| *c)
                        .unwrap_or(0),
                    recovery: (m.status() == "up")
                        .then(|| self.recovery_of(&m.id))
                        .flatten(),
                    status: match m.status() {
                        "up" if self.recovery_of(&m.id).is_some() => "recovering".to_string(),
                        other => other.to_string(),
                    },
                    hints_pending: hints.get(&m.id).copied().unwrap_or(0),
                    id: m.id,
                    address: m.address,
                    zone: m.zone,
                })
                .collect(),
            convergence: self.inner.stats.convergence(&self.shared_partitions()),
            refused: self.inner.identity.recent(),
            workers: self
                .inner
                .workers
                .statuses()
                .into_iter()
                .map(|w| WorkerInfo {
                    name: w.name.to_string(),
                    state: w.state_name().to_string(),
                    progress: w.progress,
                    iterations: w.iterations,
                    errors: w.errors,
                    last_error: w.last_error,
                    ms_since_step: w.last_step.map(|t| t.elapsed().as_millis() as u64),
                })
                .collect(),
        }
    }
}

const NOT_JOINED: &str = "this node has not joined a cluster yet (no ring); check cluster.seeds";

/// Sibling values with repeats removed, first occurrence kept: a write retried on another
/// coordinator can leave two siblings with the same bytes, and they are one value to the
/// user. The context still covers both.
fn distinct(values: Vec<&[u8]>) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Bytes a value costs in a reply beyond its own length.
const VALUE_OVERHEAD: usize = 16;
/// Room a read reply keeps for everything but the values and the context.
const REPLY_OVERHEAD: usize = 64 * 1024;

fn reject(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        kind,
        message: message.into(),
    }
}

pub(crate) fn quorum_error(op: &str, needed: usize, answered: usize) -> Response {
    metrics::counter!("chorus_quorum_failures_total", "op" => op.to_string()).increment(1);
    Response::error(
        ErrorKind::Quorum {
            needed: needed as u32,
            answered: answered as u32,
        },
        format!("{op} quorum not met: needed {needed} replicas, {answered} answered"),
    )
}

/// A read that found fewer than R whole replicas; names those that answered as recovering,
/// so the error says why rather than "not found".
pub(crate) fn read_quorum_error(needed: usize, answered: usize, recovering: &[String]) -> Response {
    if recovering.is_empty() {
        return quorum_error("read", needed, answered);
    }
    metrics::counter!("chorus_quorum_failures_total", "op" => "read").increment(1);
    Response::error(
        ErrorKind::Quorum {
            needed: needed as u32,
            answered: answered as u32,
        },
        format!(
            "read quorum not met: needed {needed} whole replicas, {answered} answered; recovering (lost or restored data, not counted until exchanged with the other replicas): {}",
            recovering.join(", ")
        ),
    )
}

pub(crate) fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::GetMany { .. } => "get_many",
        Request::PutMany { .. } => "put_many",
        Request::GetReplica { .. } => "get_replica",
        Request::Ring => "ring",
        Request::Status => "status",
        Request::Repair => "repair",
        Request::Leave { .. } => "leave",
        Request::Remove { .. } => "remove",
        Request::ListKeys { .. } => "list_keys",
        Request::Truncate { .. } => "truncate",
    }
}
