//! Key listing and bucket truncation across the cluster. The coordinator (any node) plans
//! with `chorus_core::listing` which nodes cover which partitions, sends each node one
//! message for all of its partitions, and merges the answers; the replicas walk their
//! local data ([`crate::replica::ListAsk`], [`crate::replica::Replica::truncate`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chorus_client::proto::{ErrorKind, Response};
use chorus_core::listing::{
    cover, decode_token, encode_token, merge, owners, start_key, Answer, DEFAULT_LIMIT, MAX_LIMIT,
};
use tokio::task::JoinSet;

use crate::call::{CallError, ListKeys, PeerCall, Truncate};
use crate::network::Priority;
use crate::node::Node;
use crate::replica::ListAsk;
use crate::rpc::{PeerError, PeerResponse};

/// The least time a truncation waits for an owner: each deletes every key it holds.
const TRUNCATE_DEADLINE: Duration = Duration::from_secs(60);

impl Node {
    /// A page of a bucket's keys (client `ListKeys`).
    pub(crate) async fn list_keys(
        &self,
        bucket: Vec<u8>,
        prefix: Vec<u8>,
        limit: u32,
        after: Option<String>,
    ) -> Response {
        if let Some(e) = self.check_listing(&bucket, &prefix) {
            return e;
        }
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            l if l > MAX_LIMIT => {
                return Response::error(
                    ErrorKind::BadRequest,
                    format!("limit {l} is over the maximum of {MAX_LIMIT} keys a page"),
                )
            }
            l => l,
        };
        let after = match after.as_deref().map(decode_token).transpose() {
            Ok(a) => a,
            Err(e) => return Response::error(ErrorKind::BadRequest, e.to_string()),
        };
        let me = self.inner.cfg.id.clone();
        let n = self.inner.cfg.n_for(&bucket);
        let mut todo: Vec<u32> = (0..self.inner.cfg.cluster.partitions).collect();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut why: Vec<String> = Vec::new();
        let mut answers: Vec<Answer> = Vec::new();
        // Each round asks again, elsewhere, for the partitions of the nodes that failed.
        while !todo.is_empty() {
            let state = self.cluster();
            let usable = |x: &str| !failed.contains(x) && (x == me || self.inner.members.is_up(x));
            let plan = match cover(&state, n, todo.iter().copied(), usable) {
                Ok(p) => p,
                Err(e) => {
                    let mut msg = format!("cannot list bucket {:?}: {e}", lossy(&bucket));
                    if !why.is_empty() {
                        msg.push_str(&format!("; failed: {}", why.join("; ")));
                    }
                    return Response::error(ErrorKind::Unavailable, msg);
                }
            };
            todo.clear();
            let mut calls = JoinSet::new();
            for (node, partitions) in plan {
                let call = ListKeys {
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    after: after.clone(),
                    partitions: partitions.clone(),
                    limit,
                };
                let this = self.clone();
                calls.spawn(async move {
                    let r = this.ask_list(&node, call).await;
                    (node, partitions, r)
                });
            }
            while let Some(done) = calls.join_next().await {
                match done {
                    Ok((_, _, Ok(a))) => answers.push(a),
                    Ok((node, partitions, Err(e))) => {
                        why.push(format!("{node}: {e}"));
                        failed.insert(node);
                        todo.extend(partitions);
                    }
                    Err(e) => return Response::error(ErrorKind::Internal, format!("listing: {e}")),
                }
            }
        }
        let page = merge(answers, limit as usize, self.reply_budget());
        Response::Keys {
            keys: page
                .keys
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            next: page.next.as_deref().map(encode_token),
        }
    }

    async fn ask_list(&self, node: &str, call: ListKeys) -> Result<Answer, CallError> {
        if node == self.inner.cfg.id {
            let ListKeys {
                bucket,
                prefix,
                after,
                partitions,
                limit,
            } = call;
            let resp = self
                .list_local(bucket, prefix, after, partitions, limit)
                .await;
            return ListKeys::reply(resp);
        }
        let deadline = self.inner.cfg.timeouts.request;
        self.call(node, call, deadline, Priority::Client).await
    }

    /// This replica's part of a listing (peer `ListKeys`).
    pub(crate) async fn list_local(
        &self,
        bucket: Vec<u8>,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        partitions: Vec<u32>,
        limit: u32,
    ) -> PeerResponse {
        if self.is_removed() {
            return PeerResponse::Error(PeerError::Removed);
        }
        if !self.serves_data() {
            return PeerResponse::Error(PeerError::Recovering);
        }
        if let Err(e) = self.check_partitions(&bucket, &partitions) {
            return PeerResponse::Error(e);
        }
        if limit > MAX_LIMIT {
            return PeerResponse::Error(PeerError::BadRequest(format!(
                "limit {limit} over {MAX_LIMIT}"
            )));
        }
        let ask = ListAsk {
            start: start_key(&prefix, after.as_deref()),
            bucket,
            prefix,
            partitions,
            limit: limit as usize,
            max_bytes: self.reply_budget(),
        };
        match self.inner.replica.list_keys(ask).await {
            Ok((keys, more)) => PeerResponse::KeyList {
                keys: keys.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                more,
            },
            Err(e) => PeerResponse::Error(e.into()),
        }
    }

    /// Deletes every key of a bucket (client `Truncate`, admin only): every owner of every
    /// partition deletes what it holds, so all of them must answer.
    pub(crate) async fn truncate(&self, bucket: Vec<u8>) -> Response {
        if let Some(e) = self.check_listing(&bucket, b"") {
            return e;
        }
        let state = self.cluster();
        let n = self.inner.cfg.n_for(&bucket);
        let plan = match owners(&state, n, 0..self.inner.cfg.cluster.partitions) {
            Ok(p) => p,
            Err(e) => return Response::error(ErrorKind::Unavailable, e.to_string()),
        };
        let me = self.inner.cfg.id.clone();
        // Refuse before deleting anything when an owner is known to be down.
        let down: Vec<String> = plan
            .keys()
            .filter(|x| **x != me && !self.inner.members.is_up(x))
            .cloned()
            .collect();
        if !down.is_empty() {
            return Response::error(
                ErrorKind::Unavailable,
                format!(
                    "truncate of bucket {:?} not started: owners down: {}; nothing was deleted, retry once they are up",
                    lossy(&bucket),
                    down.join(", ")
                ),
            );
        }
        let mut calls = JoinSet::new();
        for (node, partitions) in plan {
            let this = self.clone();
            let bucket = bucket.clone();
            calls.spawn(async move {
                let r = this.ask_truncate(&node, bucket, partitions).await;
                (node, r)
            });
        }
        // Keys per partition: the most any owner deleted (they hold the same keys once in
        // sync), so the total counts keys rather than copies.
        let mut per: BTreeMap<u32, u64> = BTreeMap::new();
        let mut failed = Vec::new();
        while let Some(done) = calls.join_next().await {
            match done {
                Ok((_, Ok(d))) => {
                    for (p, n) in d {
                        let e = per.entry(p).or_default();
                        *e = (*e).max(n);
                    }
                }
                Ok((node, Err(e))) => failed.push(format!("{node} ({e})")),
                Err(e) => failed.push(format!("a task failed ({e})")),
            }
        }
        let deleted: u64 = per.values().sum();
        if !failed.is_empty() {
            failed.sort();
            return Response::error(
                ErrorKind::Unavailable,
                format!(
                    "truncate of bucket {:?} incomplete: not done on {}; {deleted} keys deleted elsewhere; it is safe to retry",
                    lossy(&bucket),
                    failed.join(", ")
                ),
            );
        }
        Response::Truncated { deleted }
    }

    async fn ask_truncate(
        &self,
        node: &str,
        bucket: Vec<u8>,
        partitions: Vec<u32>,
    ) -> Result<Vec<(u32, u64)>, CallError> {
        if node == self.inner.cfg.id {
            return Truncate::reply(self.truncate_local(bucket, partitions).await);
        }
        let deadline = self.inner.cfg.timeouts.request.max(TRUNCATE_DEADLINE);
        let call = Truncate { bucket, partitions };
        self.call(node, call, deadline, Priority::Client).await
    }

    /// This replica's part of a truncation (peer `Truncate`). Only a replica that may
    /// coordinate writes deletes: its tombstones are writes it coordinates.
    pub(crate) async fn truncate_local(
        &self,
        bucket: Vec<u8>,
        partitions: Vec<u32>,
    ) -> PeerResponse {
        if self.is_removed() {
            return PeerResponse::Error(PeerError::Removed);
        }
        if !self.coordinates_writes() {
            return PeerResponse::Error(PeerError::NotTakingWrites);
        }
        if let Err(e) = self.check_partitions(&bucket, &partitions) {
            return PeerResponse::Error(e);
        }
        let batch = self.inner.cfg.storage.max_batch.max(1);
        match self
            .inner
            .replica
            .truncate(&bucket, &partitions, batch)
            .await
        {
            Ok(n) => PeerResponse::Truncated(n),
            Err(e) => PeerResponse::Error(e.into()),
        }
    }

    /// The error reply for a bucket or prefix over the limits.
    fn check_listing(&self, bucket: &[u8], prefix: &[u8]) -> Option<Response> {
        let l = &self.inner.cfg.limits;
        if bucket.len() > l.max_bucket_bytes {
            return Some(Response::error(
                ErrorKind::TooLarge,
                format!(
                    "bucket name of {} bytes exceeds the limit of {} bytes (limits.max_bucket_bytes)",
                    bucket.len(),
                    l.max_bucket_bytes
                ),
            ));
        }
        if prefix.len() > l.max_key_bytes {
            return Some(Response::error(
                ErrorKind::BadRequest,
                format!(
                    "prefix of {} bytes is longer than any key (limits.max_key_bytes = {})",
                    prefix.len(),
                    l.max_key_bytes
                ),
            ));
        }
        None
    }

    fn check_partitions(&self, bucket: &[u8], partitions: &[u32]) -> Result<(), PeerError> {
        let count = self.inner.cfg.cluster.partitions;
        if bucket.len() > self.inner.cfg.limits.max_bucket_bytes {
            return Err(PeerError::BadRequest("bucket name too long".into()));
        }
        match partitions.iter().find(|p| **p >= count) {
            Some(p) => Err(PeerError::BadRequest(format!(
                "partition {p} out of range (the cluster has {count})"
            ))),
            None => Ok(()),
        }
    }
}

/// A bucket name for messages.
fn lossy(bucket: &[u8]) -> String {
    String::from_utf8_lossy(bucket).into_owned()
}
