//! Batch reads (`GetMany`): many keys of one bucket in one client request, each decided on
//! its own by a [`chorus_core::get::GetCoordinator`] (R applies per key), while the
//! messages are batched: the keys a replica is asked for in one step go to it in one
//! `ReadKeys` message, and its `Versions` answer feeds every key's machine.
//!
//! Simplifications next to the single read: no periodic full reads (`read_repair.chance`);
//! speculative retries, recovering replicas and read repair within the window work as for
//! a single key. The reply is bounded: keys whose values would take it past a frame are
//! answered with a per-key `TooLarge` error instead.

use std::collections::BTreeMap;
use std::time::Duration;

use chorus_client::proto::{ErrorKind, ErrorReply, KeyValue, Level, Response, ValueReply};
use chorus_core::get::{GetAction, GetCoordinator, GetReply, GetTiming, ReadAnswer};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batch::{Budget, ITEM_OVERHEAD};
use crate::call::CallError;
use crate::client_api::read_quorum_error;
use crate::coordinate_get::ReadKey;
use crate::node::Node;
use crate::rpc::{PeerError, PeerResponse};
use crate::storage::data_key;
use crate::transport::Priority;
use crate::version::Object;

/// Answers for some keys of a batch (by position) from one replica.
type Answers = (String, Vec<(usize, ReadAnswer)>);

/// One key of a batch read being decided.
struct KeyRead {
    at: ReadKey,
    machine: GetCoordinator,
    finished: bool,
}

impl Node {
    pub(crate) async fn get_many(&self, bucket: Vec<u8>, keys: Vec<ByteBuf>, r: Level) -> Response {
        if let Err(e) = self.check_batch(keys.len()) {
            return Response::Error(e);
        }
        let cfg = &self.inner.cfg;
        let rr = &cfg.read_repair;
        let timing = GetTiming {
            speculative_after: rr.speculative_after,
            deadline: cfg.timeouts.request,
            repair_window: rr.enabled.then_some(rr.window),
        };
        let mut results: Vec<Option<Result<ValueReply, ErrorReply>>> = vec![None; keys.len()];
        let mut reads: Vec<Option<KeyRead>> = Vec::with_capacity(keys.len());
        let mut first = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let key = key.into_vec();
            let plan = match self.plan(&bucket, &key, r) {
                Ok(p) => p,
                Err(e) => {
                    results[i] = Some(Err(e));
                    reads.push(None);
                    continue;
                }
            };
            let mut machine = GetCoordinator::new(plan.pref, plan.needed, &cfg.id, false, timing);
            let actions = machine.start(Duration::ZERO, |n| self.inner.members.is_up(n));
            first.extend(actions.into_iter().map(|a| (i, a)));
            reads.push(Some(KeyRead {
                at: ReadKey {
                    skey: data_key(plan.partition, &bucket, &key),
                    bucket: bucket.clone(),
                    key,
                },
                machine,
                finished: false,
            }));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let origin = Instant::now();
        // Like a single read, the batch outlives its reply until its read repairs are sent.
        tokio::spawn(
            self.clone()
                .drive_get_many(reads, results, first, origin, reply_tx),
        );
        reply_rx
            .await
            .unwrap_or_else(|_| Response::error(ErrorKind::Internal, "batch read task failed"))
    }

    /// Refuses a batch over `limits.max_batch_keys`.
    pub(crate) fn check_batch(&self, len: usize) -> Result<(), ErrorReply> {
        let max = self.inner.cfg.limits.max_batch_keys;
        if len > max {
            return Err(ErrorReply {
                kind: ErrorKind::BadRequest,
                message: format!(
                    "batch of {len} keys exceeds the limit of {max} keys (limits.max_batch_keys); split it"
                ),
            });
        }
        Ok(())
    }

    async fn drive_get_many(
        self,
        mut reads: Vec<Option<KeyRead>>,
        mut results: Vec<Option<Result<ValueReply, ErrorReply>>>,
        mut actions: Vec<(usize, GetAction)>,
        origin: Instant,
        reply: oneshot::Sender<Response>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
        let mut reply = Some(reply);
        let mut changes = self.inner.members.subscribe();
        loop {
            let mut asks: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, action) in std::mem::take(&mut actions) {
                let Some(read) = reads[i].as_mut() else {
                    continue;
                };
                match action {
                    GetAction::Ask(node) => asks.entry(node).or_default().push(i),
                    GetAction::Reply(GetReply::Met(obj)) => {
                        let v = self.value_reply(&read.at.bucket, &read.at.key, obj.as_ref());
                        results[i] = Some(Ok(v));
                    }
                    GetAction::Reply(GetReply::Failed {
                        needed,
                        answered,
                        recovering,
                    }) => {
                        results[i] = Some(Err(
                            match read_quorum_error(needed, answered, &recovering) {
                                Response::Error(e) => e,
                                _ => ErrorReply {
                                    kind: ErrorKind::Internal,
                                    message: "read failed".into(),
                                },
                            },
                        ));
                    }
                    GetAction::Repair { targets, merged } => {
                        let at = ReadKey {
                            bucket: read.at.bucket.clone(),
                            key: read.at.key.clone(),
                            skey: read.at.skey.clone(),
                        };
                        let this = self.clone();
                        tokio::spawn(async move { this.read_repair(targets, merged, &at).await });
                    }
                    GetAction::Finished => read.finished = true,
                }
            }
            for (node, idxs) in asks {
                let keys: Vec<(usize, &ReadKey)> = idxs
                    .into_iter()
                    .filter_map(|i| reads[i].as_ref().map(|r| (i, &r.at)))
                    .collect();
                self.ask_keys(node, keys, &tx);
            }
            if reply.is_some() && results.iter().all(Option::is_some) {
                let out = self.bound_reply(&reads, std::mem::take(&mut results));
                if let Some(r) = reply.take() {
                    let _ = r.send(Response::Values(out));
                }
            }
            let next = reads
                .iter()
                .flatten()
                .filter(|r| !r.finished)
                .filter_map(|r| r.machine.next_timer())
                .min();
            let Some(next) = next else {
                return;
            };
            tokio::select! {
                Some((node, answers)) = rx.recv() => {
                    let now = origin.elapsed();
                    for (i, answer) in answers {
                        if let Some(r) = reads[i].as_mut() {
                            let acts = r.machine.on_answer(&node, answer, now);
                            actions.extend(acts.into_iter().map(|a| (i, a)));
                        }
                    }
                }
                _ = tokio::time::sleep_until(origin + next) => {
                    let now = origin.elapsed();
                    for (i, r) in reads.iter_mut().enumerate() {
                        if let Some(r) = r.as_mut().filter(|r| !r.finished) {
                            let acts = r.machine.on_timer(now);
                            actions.extend(acts.into_iter().map(|a| (i, a)));
                        }
                    }
                }
                Ok(()) = changes.changed() => {
                    let now = origin.elapsed();
                    for (i, r) in reads.iter_mut().enumerate() {
                        let Some(r) = r.as_mut().filter(|r| !r.finished) else {
                            continue;
                        };
                        let down = self.down_among(r.machine.waiting_on());
                        for n in down {
                            let acts = r.machine.on_down(&n, now);
                            actions.extend(acts.into_iter().map(|a| (i, a)));
                        }
                    }
                }
            }
        }
    }

    /// The per-key results, in order, cut to what one frame carries: a key whose reply
    /// would pass the budget gets a `TooLarge` error instead of its values.
    fn bound_reply(
        &self,
        reads: &[Option<KeyRead>],
        results: Vec<Option<Result<ValueReply, ErrorReply>>>,
    ) -> Vec<KeyValue> {
        let budget = self.reply_budget();
        let mut used = 0usize;
        results
            .into_iter()
            .zip(reads)
            .map(|(result, read)| {
                let key = read.as_ref().map(|r| r.at.key.clone()).unwrap_or_default();
                let result = result.unwrap_or_else(|| {
                    Err(ErrorReply {
                        kind: ErrorKind::Internal,
                        message: "key left undecided".into(),
                    })
                });
                let cost = key.len()
                    + ITEM_OVERHEAD
                    + match &result {
                        Ok(v) => {
                            v.context.len() + v.values.iter().map(|x| x.len() + 16).sum::<usize>()
                        }
                        Err(e) => e.message.len(),
                    };
                let result = if used + cost > budget && result.is_ok() {
                    Err(ErrorReply {
                        kind: ErrorKind::TooLarge,
                        message: "this key's values don't fit in the batch reply (limits.max_frame_bytes); read it on its own or in a smaller batch".into(),
                    })
                } else {
                    used += cost;
                    result
                };
                KeyValue { key, result }
            })
            .collect()
    }

    /// Asks one replica for some keys of the batch in one task: the local replica
    /// directly, another with `ReadKeys` messages (more than one if its answers are cut
    /// by size). Sends the answers to `tx` as they come.
    fn ask_keys(
        &self,
        node: String,
        keys: Vec<(usize, &ReadKey)>,
        tx: &mpsc::UnboundedSender<Answers>,
    ) {
        let tx = tx.clone();
        let this = self.clone();
        if node == self.inner.cfg.id {
            if !self.is_whole() {
                let answers = keys
                    .iter()
                    .map(|(i, _)| (*i, ReadAnswer::Recovering))
                    .collect();
                let _ = tx.send((node, answers));
                return;
            }
            let keys: Vec<(usize, Vec<u8>)> =
                keys.into_iter().map(|(i, k)| (i, k.skey.clone())).collect();
            tokio::spawn(async move {
                let mut jobs = tokio::task::JoinSet::new();
                for (i, skey) in keys {
                    let replica = this.inner.replica.clone();
                    jobs.spawn(async move { (i, replica.get(skey).await) });
                }
                let mut answers = Vec::new();
                while let Some(done) = jobs.join_next().await {
                    if let Ok((i, r)) = done {
                        answers.push((
                            i,
                            match r {
                                Ok(o) => ReadAnswer::Version(o),
                                Err(e) => {
                                    tracing::debug!(error = %e, "replica read failed");
                                    ReadAnswer::Failed
                                }
                            },
                        ));
                    }
                }
                let _ = tx.send((node, answers));
            });
            return;
        }
        let keys: Vec<(usize, (ByteBuf, ByteBuf))> = keys
            .into_iter()
            .map(|(i, k)| {
                (
                    i,
                    (
                        ByteBuf::from(k.bucket.clone()),
                        ByteBuf::from(k.key.clone()),
                    ),
                )
            })
            .collect();
        let chunk_bytes = self.inner.cfg.limits.batch_bytes();
        tokio::spawn(async move {
            let deadline = this.inner.cfg.timeouts.request;
            let mut rest = keys.as_slice();
            while !rest.is_empty() {
                // A message carries keys up to the background byte budget.
                let mut budget = Budget::new(rest.len(), chunk_bytes);
                let take = rest
                    .iter()
                    .take_while(|(_, (b, k))| budget.take(b.len() + k.len() + ITEM_OVERHEAD))
                    .count();
                let chunk = &rest[..take.max(1)];
                let call = crate::call::ReadKeys(
                    chunk
                        .iter()
                        .map(|(_, (b, k))| (b.to_vec(), k.to_vec()))
                        .collect(),
                );
                let answered = match this.call(&node, call, deadline, Priority::Client).await {
                    Ok(crate::call::Versions { whole, versions }) if !versions.is_empty() => {
                        versions
                            .into_iter()
                            .zip(chunk)
                            .map(|(v, (i, _))| (*i, version_answer(whole, v)))
                            .collect::<Vec<_>>()
                    }
                    other => {
                        // A recovering replica that refuses says so; it still doesn't count.
                        let recovering = matches!(
                            &other,
                            Err(CallError::Peer(
                                PeerError::Recovering | PeerError::NotTakingWrites
                            ))
                        );
                        if let Err(e) = &other {
                            tracing::debug!(%node, error = %e, "batch read failed");
                        }
                        let answer = || {
                            if recovering {
                                ReadAnswer::Recovering
                            } else {
                                ReadAnswer::Failed
                            }
                        };
                        // The whole chunk failed; so would the rest.
                        let answers = rest.iter().map(|(i, _)| (*i, answer())).collect();
                        let _ = tx.send((node, answers));
                        return;
                    }
                };
                let n = answered.len().min(chunk.len());
                let _ = tx.send((node.clone(), answered));
                // A cut answer leaves the rest of the chunk for the next message.
                rest = &rest[n..];
            }
        });
    }

    /// Answers `ReadKeys`: the longest prefix of the keys whose versions fit in a frame
    /// (at least one), and whether this replica counts toward R.
    pub(crate) async fn read_keys(&self, keys: Vec<(ByteBuf, ByteBuf)>) -> PeerResponse {
        if keys.len() > self.inner.cfg.limits.max_batch_keys.max(1) {
            return PeerResponse::Error(PeerError::BadRequest(format!(
                "{} keys in one read is too many",
                keys.len()
            )));
        }
        // Judged before reading: a replica that becomes whole meanwhile doesn't vouch for
        // reads made while it wasn't.
        let whole = self.is_whole();
        let mut jobs = tokio::task::JoinSet::new();
        for (i, (bucket, key)) in keys.iter().enumerate() {
            if let Err(e) = self.check_key(bucket, key) {
                return PeerResponse::Error(PeerError::BadRequest(e.message));
            }
            let replica = self.inner.replica.clone();
            let skey = self.storage_key(bucket, key);
            jobs.spawn(async move { (i, replica.get_encoded(skey).await) });
        }
        let mut read: Vec<Option<Result<Option<Vec<u8>>, String>>> = vec![None; keys.len()];
        while let Some(done) = jobs.join_next().await {
            match done {
                Ok((i, r)) => read[i] = Some(r.map_err(|e| e.to_string())),
                Err(e) => return PeerResponse::Error(PeerError::Internal(e.to_string())),
            }
        }
        let room = self.reply_budget();
        let mut budget = Budget::new(keys.len(), room);
        let mut versions = Vec::with_capacity(keys.len());
        for ((bucket, key), r) in keys.iter().zip(read) {
            let r = match r.unwrap_or_else(|| Err("read lost".into())) {
                // Say why instead of sending a frame the requester refuses.
                Ok(Some(o)) if o.len() > room => Err(format!(
                    "stored version of {} bytes exceeds limits.max_frame_bytes; resolve the key's siblings",
                    o.len()
                )),
                other => other,
            };
            let size = bucket.len()
                + key.len()
                + ITEM_OVERHEAD
                + r.as_ref().map_or(0, |o| o.as_ref().map_or(0, Vec::len));
            if !budget.take(size) {
                break;
            }
            versions.push(r.map(|o| o.map(ByteBuf::from)));
        }
        PeerResponse::Versions { whole, versions }
    }
}

/// One key's answer in a `Versions` reply, as the read machine takes it.
fn version_answer(whole: bool, v: Result<Option<Vec<u8>>, String>) -> ReadAnswer {
    match v {
        Ok(_) if !whole => ReadAnswer::Recovering,
        Ok(None) => ReadAnswer::Version(None),
        Ok(Some(b)) => match Object::decode(&b) {
            Ok(o) => ReadAnswer::Version(Some(o)),
            Err(e) => {
                tracing::debug!(error = %e, "undecodable version in a batch read");
                ReadAnswer::Failed
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "replica could not read a key of a batch");
            ReadAnswer::Failed
        }
    }
}
