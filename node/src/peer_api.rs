//! The peer protocol: what a node answers other nodes (pings, replica reads and writes,
//! hints held for a down node, forwarded client writes, gossip, transfers and anti-entropy
//! exchanges), and the local operations those share with the coordinators.

use crate::hints::{now_ms, Hint};
use crate::node::Node;
use crate::replica::Change;
use crate::rpc::{Item, PeerError, PeerRequest, PeerResponse};
use crate::version::Object;

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
                    return PeerResponse::Error(PeerError::WrongCluster {
                        by: self.inner.cfg.id.clone(),
                        why,
                    });
                }
                PeerResponse::Pong {
                    node: self.inner.cfg.id.clone(),
                    epoch: self.inner.replica.actor().epoch,
                    recovering: self.recovery_report(),
                }
            }
            PeerRequest::Read { .. } if self.is_removed() => {
                PeerResponse::Error(PeerError::Removed)
            }
            PeerRequest::Read { bucket, key } => match self.read_local(&bucket, &key).await {
                // Say why instead of sending a frame the requester refuses.
                Ok(Some(o)) if o.len() > self.reply_budget() => {
                    PeerResponse::Error(PeerError::TooLarge {
                        what: "stored version (resolve the key's siblings)".into(),
                        size: o.len() as u64,
                        limit: self.reply_budget() as u64,
                    })
                }
                Ok(o) if self.is_whole() => PeerResponse::Object(o),
                Ok(o) => PeerResponse::Recovering(o),
                Err(e) => PeerResponse::Error(e),
            },
            PeerRequest::ReadKeys(_) if self.is_removed() => {
                PeerResponse::Error(PeerError::Removed)
            }
            PeerRequest::ReadKeys(keys) => self.read_keys(keys).await,
            PeerRequest::Replicate(_) | PeerRequest::MergeMany(_) if !self.accepts_writes() => {
                PeerResponse::Error(PeerError::NotTakingWrites)
            }
            PeerRequest::Replicate(item) => acked(self.merge_items(vec![item]).await),
            PeerRequest::MergeMany(items) => acked(self.merge_items(items).await),
            PeerRequest::PartitionScan { .. }
            | PeerRequest::TreeRoots(_)
            | PeerRequest::TreeBranches(_)
            | PeerRequest::TreeLeaves { .. }
            | PeerRequest::SegmentKeys { .. }
            | PeerRequest::ReadMany(_)
                if !self.serves_data() =>
            {
                PeerResponse::Error(PeerError::Recovering)
            }
            PeerRequest::Gossip(theirs) => self.receive_gossip(*theirs).await,
            PeerRequest::ListKeys {
                bucket,
                prefix,
                after,
                partitions,
                limit,
            } => {
                self.list_local(bucket, prefix, after, partitions, limit)
                    .await
            }
            PeerRequest::Truncate { bucket, partitions } => {
                self.truncate_local(bucket, partitions).await
            }
            PeerRequest::PartitionScan {
                partition,
                after,
                limit,
            } => self.partition_scan(partition, after, limit).await,
            PeerRequest::StoreHint { target, item } => {
                if !self.inner.members.state().members.contains_key(&target) {
                    return PeerResponse::Error(PeerError::BadRequest(format!(
                        "hint for unknown node {target:?}"
                    )));
                }
                if let Err(e) = self.check_key(&item.bucket, &item.key) {
                    return PeerResponse::Error(e.into());
                }
                if let Err(e) = Object::decode(&item.object) {
                    return PeerResponse::Error(bad_object(e));
                }
                acked(self.store_hint(&target, item).await)
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
    ) -> Result<Option<Vec<u8>>, PeerError> {
        self.check_key(bucket, key)?;
        Ok(self
            .inner
            .replica
            .get_encoded(self.storage_key(bucket, key))
            .await?)
    }

    /// Merges versions from another node into the local replica, as one write batch.
    pub(crate) async fn merge_items(&self, items: Vec<Item>) -> Result<(), PeerError> {
        if items.len() > 4 * self.inner.cfg.storage.max_batch.max(1024) {
            return Err(PeerError::BadRequest(format!(
                "{} items in one message is too many",
                items.len()
            )));
        }
        let mut jobs = tokio::task::JoinSet::new();
        for item in items {
            self.check_key(&item.bucket, &item.key)?;
            let obj = Object::decode(&item.object).map_err(bad_object)?;
            let replica = self.inner.replica.clone();
            let key = self.storage_key(&item.bucket, &item.key);
            // Submitted together, so the writer groups them into one batch.
            jobs.spawn(async move { replica.apply(key, Change::Merge(obj)).await });
        }
        while let Some(r) = jobs.join_next().await {
            r??;
        }
        Ok(())
    }

    /// Stores a hint for `target` durably and wakes hint replay.
    pub(crate) async fn store_hint(&self, target: &str, item: Item) -> Result<(), PeerError> {
        let hints = self.inner.hints.clone();
        let target_owned = target.to_string();
        let hint = Hint {
            bucket: item.bucket,
            key: item.key,
            object: item.object,
            created_ms: now_ms(),
        };
        tokio::task::spawn_blocking(move || hints.add(&target_owned, &hint)).await??;
        metrics::gauge!("chorus_hints_pending", "target" => target.to_string())
            .set(self.inner.hints.pending_for(target) as f64);
        self.inner.handoff_kick.notify_one();
        Ok(())
    }
}

/// `Ack` for a request that succeeded, else its error.
fn acked(r: Result<(), PeerError>) -> PeerResponse {
    match r {
        Ok(()) => PeerResponse::Ack,
        Err(e) => PeerResponse::Error(e),
    }
}

fn bad_object(e: impl std::fmt::Display) -> PeerError {
    PeerError::BadRequest(format!("bad object: {e}"))
}
