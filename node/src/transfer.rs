//! Partition transfers after a ring change. Each node that gains a partition pulls it, page
//! by page, from a node of the old replica set, merging every page as one write batch; the
//! cursor is persisted after each page, so a restart of either side resumes rather than
//! starts over. It then compares trees with the other old replicas (anti-entropy) to pick up
//! anything the source lacked, and confirms the transfer in the gossiped state. A node that
//! no longer replicates a partition drops it only after the transition is over (every
//! gainer confirmed) and a last tree exchange with the current replicas succeeded.
//!
//! Which partitions to pull, from whom, and which to drop is `chorus_core::transfer`.

use std::time::Duration;

use chorus_core::transfer;

use crate::anti_entropy::tree_ref;
use crate::batch::{Budget, ITEM_OVERHEAD};
use crate::call::{CallError, Page, PartitionScan};
use crate::rpc::{Item, PeerError, PeerResponse};
use crate::server::Node;
use crate::storage::{Op, StorageError, Table};
use crate::transport::Priority;
use crate::worker::{Worker, WorkerError, WorkerState};
use tokio::sync::watch;

/// Largest page a scan answers with.
const MAX_PAGE: u32 = 4096;
/// Keys read from storage at a time while filling a page.
const SCAN_PIECE: usize = 64;

fn cursor_key(version: u64, partition: u32) -> Vec<u8> {
    format!("xfer/{version}/{partition}").into_bytes()
}

/// `[start, end)` of a partition's data keys.
fn partition_range(p: u32) -> (Vec<u8>, Vec<u8>) {
    let start = p.to_be_bytes().to_vec();
    let end = match p.checked_add(1) {
        Some(n) => n.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    };
    (start, end)
}

/// Transfers as a background worker: a pass that pulls every partition this node gains
/// and drops those it gave away, then a wait for a cluster change or a second.
pub(crate) struct Transfers {
    node: Node,
    changes: watch::Receiver<u64>,
    /// Partitions to pull in the last pass, and those received.
    wanted: usize,
    received: usize,
}

impl Transfers {
    pub(crate) fn new(node: Node) -> Transfers {
        let changes = node.inner.members.subscribe();
        Transfers {
            node,
            changes,
            wanted: 0,
            received: 0,
        }
    }
}

impl Worker for Transfers {
    fn name(&self) -> &'static str {
        "transfers"
    }

    fn progress(&self) -> String {
        if self.wanted == 0 {
            "no partitions to receive".into()
        } else {
            format!(
                "received {} of {} partitions in the last pass",
                self.received, self.wanted
            )
        }
    }

    async fn step(&mut self) -> Result<WorkerState, WorkerError> {
        let node = &self.node;
        let state = node.cluster();
        let me = node.inner.cfg.id.clone();
        let version = state.ring.as_ref().map(|r| r.version()).unwrap_or(0);
        let mine = transfer::to_pull(&state, &me);
        (self.wanted, self.received) = (mine.len(), 0);
        let mut unfinished = Vec::new();
        for p in mine {
            match node.pull_partition(p, version).await {
                Ok(keys) => {
                    self.received += 1;
                    let confirmed = node.inner.members.update(|s| {
                        s.ring.as_ref().map(|r| r.version()) == Some(version)
                            && s.done.insert((p, me.clone()))
                    });
                    if confirmed {
                        tracing::info!(partition = p, keys, "partition received");
                        node.persist_state().await;
                    }
                }
                Err(e) => {
                    tracing::debug!(partition = p, error = %e, "transfer not finished");
                    unfinished.push(format!("partition {p}: {e}"));
                }
            }
        }
        node.drop_unowned().await;
        // Status keeps one line: the count and the first reason.
        match unfinished.first() {
            None => Ok(WorkerState::Idle),
            Some(first) => Err(format!(
                "{} transfers not finished, retried; {first}",
                unfinished.len()
            )
            .into()),
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl Node {
    /// Every N in use: the default and each bucket's, as configured. Trees are named by
    /// these whatever the member count; only the replica sets shrink with the ring.
    pub(crate) fn n_classes(&self) -> Vec<usize> {
        let cluster = &self.inner.cfg.cluster;
        let mut ns: Vec<usize> = cluster
            .buckets_n()
            .into_iter()
            .map(|(_, n)| n)
            .chain([cluster.n])
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    }

    /// Pulls partition `p` into this node for ring `version`; returns the keys received.
    async fn pull_partition(&self, p: u32, version: u64) -> Result<u64, String> {
        let state = self.cluster();
        let prev = state.prev.as_ref().ok_or("no transition")?;
        let me = self.inner.cfg.id.as_str();
        let members = &self.inner.members;
        let source = transfer::source(prev, p, me, |s| members.is_up(s))
            .ok_or("no live source for the partition")?;
        let source = &source;
        let key = cursor_key(version, p);
        let storage = self.inner.storage.clone();
        let k = key.clone();
        let mut after = tokio::task::spawn_blocking(move || storage.get(Table::Meta, &k))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let batch = self.inner.cfg.transfers.batch.min(MAX_PAGE as usize) as u32;
        let deadline = self.inner.cfg.timeouts.request * 2;
        let mut keys = 0u64;
        loop {
            let req = PartitionScan {
                partition: p,
                after: after.clone(),
                limit: batch,
            };
            let Page { items, next } = self
                .call(source, req, deadline, Priority::Background)
                .await
                .map_err(|e| match e {
                    CallError::Peer(e) => format!("{source} refused a page: {e}"),
                    e => e.to_string(),
                })?;
            keys += items.len() as u64;
            metrics::counter!("chorus_transfer_keys_total").increment(items.len() as u64);
            if !items.is_empty() {
                self.merge_items(items)
                    .await
                    .map_err(|e| format!("merging a page failed: {e}"))?;
            }
            let Some(next) = next else { break };
            after = next;
            let storage = self.inner.storage.clone();
            let (k, v) = (key.clone(), after.clone());
            tokio::task::spawn_blocking(move || storage.write(vec![Op::Put(Table::Meta, k, v)]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(self.inner.cfg.transfers.pause).await;
        }
        // The source may have missed writes that other old replicas took: compare each
        // tree with the old replicas of its N.
        for n in self.n_classes() {
            let tree = [tree_ref(p, n)];
            for other in transfer::compare_with(prev, p, n, me, source, |o| members.is_up(o)) {
                self.sync_all(&other, &tree).await?;
            }
        }
        let storage = self.inner.storage.clone();
        let _ =
            tokio::task::spawn_blocking(move || storage.write(vec![Op::Delete(Table::Meta, key)]))
                .await;
        Ok(keys)
    }

    /// The source side: a page of a partition after a cursor.
    pub(crate) async fn partition_scan(&self, p: u32, after: Vec<u8>, limit: u32) -> PeerResponse {
        if p >= self.inner.cfg.cluster.partitions {
            return PeerResponse::Error(PeerError::BadRequest(format!("no partition {p}")));
        }
        let (mut start, end) = partition_range(p);
        if !after.is_empty() {
            if after < start || after >= end {
                return PeerResponse::Error(PeerError::BadRequest(
                    "cursor outside the partition".into(),
                ));
            }
            start = after;
            start.push(0);
        }
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let max_bytes = self.inner.cfg.limits.batch_bytes();
        let storage = self.inner.storage.clone();
        // Reads small pieces until the page is full by count or by bytes, so large values
        // are never all read at once; a single key larger than the budget goes alone.
        let scanned = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let mut budget = Budget::new(limit, max_bytes);
            let mut page: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            loop {
                let want = (limit - page.len()).min(SCAN_PIECE);
                let piece = storage.scan(Table::Data, &start, &end, want)?;
                let more = piece.len() == want;
                for (k, v) in piece {
                    if !budget.take(k.len() + v.len() + ITEM_OVERHEAD) {
                        return Ok((page, true));
                    }
                    start = k.clone();
                    start.push(0);
                    page.push((k, v));
                }
                if !more {
                    return Ok((page, false));
                }
                if page.len() >= limit {
                    return Ok((page, true));
                }
            }
        })
        .await;
        let (page, cut) = match scanned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return PeerResponse::Error(e.into()),
            Err(e) => return PeerResponse::Error(e.into()),
        };
        let next = if cut {
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let items = page
            .into_iter()
            .filter_map(|(k, v)| {
                let dk = crate::storage::split_data_key(&k)?;
                Some(Item {
                    bucket: dk.bucket.to_vec(),
                    key: dk.key.to_vec(),
                    object: v,
                })
            })
            .collect();
        PeerResponse::Items { items, next }
    }

    /// Drops partitions this node no longer replicates, once the current replicas are
    /// known to hold everything it has.
    async fn drop_unowned(&self) {
        let state = self.cluster();
        let Some(ring) = state.ring.as_ref() else {
            return;
        };
        for p in transfer::to_drop(&state, &self.inner.cfg.id) {
            let (start, end) = partition_range(p);
            let storage = self.inner.storage.clone();
            let holds =
                tokio::task::spawn_blocking(move || storage.scan(Table::Data, &start, &end, 1))
                    .await
                    .map(|r| r.map(|v| !v.is_empty()).unwrap_or(false))
                    .unwrap_or(false);
            if !holds {
                continue;
            }
            // Every tree must have been compared with every current replica of its N.
            let mut synced = true;
            'classes: for n in self.n_classes() {
                let tree = [tree_ref(p, n)];
                for owner in ring.preference_list(p, n) {
                    if !self.inner.members.is_up(owner) {
                        synced = false;
                        break 'classes;
                    }
                    if let Err(e) = self.sync_all(owner, &tree).await {
                        tracing::debug!(partition = p, %owner, error = %e, "not dropped yet");
                        synced = false;
                        break 'classes;
                    }
                }
            }
            if !synced {
                continue;
            }
            match self.inner.replica.drop_partition(p).await {
                Ok(n) => tracing::info!(
                    partition = p,
                    keys = n,
                    "dropped a partition this node no longer replicates"
                ),
                Err(e) => tracing::error!(partition = p, error = %e, "could not drop a partition"),
            }
        }
    }
}
