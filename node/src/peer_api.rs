//! The peer protocol: what a node answers other nodes (pings, replica reads and writes,
//! hints held for a down node, forwarded client writes, gossip, transfers and anti-entropy
//! exchanges), and the local operations those share with the coordinators.

use crate::hints::{now_ms, Hint};
use crate::node::Node;
use crate::replica::Change;
use crate::rpc::{Item, PeerRequest, PeerResponse};
use crate::version::Object;

const REMOVED: &str = "this node has left or was removed from the cluster";
pub(crate) const NOT_TAKING_WRITES: &str =
    "recovering: this node's start is not yet confirmed by a peer; hold a hint for it";
const NOT_SERVING: &str =
    "recovering: this node's data may be incomplete or stale, and is not served to peers";

impl Node {
    pub(crate) async fn handle_peer(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Ping {
                from,
                cluster,
                settings,
            } => {
                if let Some(why) = crate::identity::mismatch(&self.inner.cfg, &cluster, &settings) {
                    self.inner.identity.refuse(&from, &why, false);
                    let me = &self.inner.cfg.id;
                    return PeerResponse::Error(format!(
                        "{} by {me}: {why}",
                        crate::gossip::REFUSED
                    ));
                }
                PeerResponse::Pong {
                    node: self.inner.cfg.id.clone(),
                    epoch: self.inner.replica.actor().epoch,
                    recovering: self.recovery_report(),
                }
            }
            PeerRequest::Read { .. } if self.is_removed() => PeerResponse::Error(REMOVED.into()),
            PeerRequest::Read { bucket, key } => match self.read_local(&bucket, &key).await {
                // Say why instead of sending a frame the requester refuses.
                Ok(Some(o)) if o.len() > self.reply_budget() => PeerResponse::Error(format!(
                    "stored version of {} bytes exceeds limits.max_frame_bytes; resolve the key's siblings",
                    o.len()
                )),
                Ok(o) if self.is_whole() => PeerResponse::Object(o),
                Ok(o) => PeerResponse::Recovering(o),
                Err(e) => PeerResponse::Error(e),
            },
            PeerRequest::ReadKeys(_) if self.is_removed() => PeerResponse::Error(REMOVED.into()),
            PeerRequest::ReadKeys(keys) => self.read_keys(keys).await,
            PeerRequest::Replicate(_) | PeerRequest::MergeMany(_) if !self.accepts_writes() => {
                PeerResponse::Error(NOT_TAKING_WRITES.into())
            }
            PeerRequest::Replicate(item) => self.merge_items(vec![item]).await,
            PeerRequest::MergeMany(items) => self.merge_items(items).await,
            PeerRequest::PartitionScan { .. }
            | PeerRequest::TreeRoots(_)
            | PeerRequest::TreeBranches(_)
            | PeerRequest::TreeLeaves { .. }
            | PeerRequest::SegmentKeys { .. }
            | PeerRequest::ReadMany(_)
                if !self.serves_data() =>
            {
                PeerResponse::Error(NOT_SERVING.into())
            }
            PeerRequest::Gossip(theirs) => self.receive_gossip(*theirs).await,
            PeerRequest::PartitionScan {
                partition,
                after,
                limit,
            } => self.partition_scan(partition, after, limit).await,
            PeerRequest::StoreHint { target, item } => {
                if !self.inner.members.state().members.contains_key(&target) {
                    return PeerResponse::Error(format!("hint for unknown node {target:?}"));
                }
                if let Err(e) = self.check_key(&item.bucket, &item.key) {
                    return PeerResponse::Error(e.message);
                }
                if let Err(e) = Object::decode(&item.object) {
                    return PeerResponse::Error(format!("bad object: {e}"));
                }
                match self.store_hint(&target, item).await {
                    Ok(()) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e),
                }
            }
            // Forwarding is for data requests; cluster changes come from admins directly.
            PeerRequest::Coordinate(req) if crate::roles::needs_admin(&req) => {
                PeerResponse::Coordinated(crate::roles::denied(&req))
            }
            PeerRequest::Coordinate(req) => {
                PeerResponse::Coordinated(Box::pin(self.handle_client(req, true)).await)
            }
            PeerRequest::TreeRoots(_)
            | PeerRequest::TreeBranches(_)
            | PeerRequest::TreeLeaves { .. }
            | PeerRequest::SegmentKeys { .. }
            | PeerRequest::ReadMany(_)
            | PeerRequest::Purge { .. } => self.handle_sync(req).await,
        }
    }

    /// This replica's encoded version of a key, after checking the key's limits.
    pub(crate) async fn read_local(
        &self,
        bucket: &[u8],
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        self.check_key(bucket, key).map_err(|e| e.message)?;
        self.inner
            .replica
            .get_encoded(self.storage_key(bucket, key))
            .await
            .map_err(|e| e.to_string())
    }

    /// Merges versions from another node into the local replica, as one write batch.
    pub(crate) async fn merge_items(&self, items: Vec<Item>) -> PeerResponse {
        if items.len() > 4 * self.inner.cfg.storage.max_batch.max(1024) {
            return PeerResponse::Error(format!(
                "{} items in one message is too many",
                items.len()
            ));
        }
        let mut jobs = tokio::task::JoinSet::new();
        for item in items {
            if let Err(e) = self.check_key(&item.bucket, &item.key) {
                return PeerResponse::Error(e.message);
            }
            let obj = match Object::decode(&item.object) {
                Ok(o) => o,
                Err(e) => return PeerResponse::Error(format!("bad object: {e}")),
            };
            let replica = self.inner.replica.clone();
            let key = self.storage_key(&item.bucket, &item.key);
            // Submitted together, so the writer groups them into one batch.
            jobs.spawn(async move { replica.apply(key, Change::Merge(obj)).await });
        }
        while let Some(r) = jobs.join_next().await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return PeerResponse::Error(e.to_string()),
                Err(e) => return PeerResponse::Error(e.to_string()),
            }
        }
        PeerResponse::Ack
    }

    /// Stores a hint for `target` durably and wakes hint replay.
    pub(crate) async fn store_hint(&self, target: &str, item: Item) -> Result<(), String> {
        let hints = self.inner.hints.clone();
        let target_owned = target.to_string();
        let hint = Hint {
            bucket: item.bucket,
            key: item.key,
            object: item.object,
            created_ms: now_ms(),
        };
        tokio::task::spawn_blocking(move || hints.add(&target_owned, &hint))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        metrics::gauge!("chorus_hints_pending", "target" => target.to_string())
            .set(self.inner.hints.pending_for(target) as f64);
        self.inner.handoff_kick.notify_one();
        Ok(())
    }
}
