//! Read repair: carrying out the repair a read decided on
//! ([`chorus_core::get::GetAction::Repair`]), sending the merged version to each replica
//! whose answer lacked part of it, one at a time, counted in `read_repairs`.

use crate::call::Replicate;
use crate::coordinate_get::ReadKey;
use crate::coordinate_put::item_bytes;
use crate::network::Priority;
use crate::node::Node;
use crate::replica::Change;
use crate::rpc::Item;
use crate::stats::Stats;
use crate::version::Object;

impl Node {
    /// Sends `merged` to every replica in `stale`: the local one through the writer, the
    /// others with a peer `Replicate`.
    pub(crate) async fn read_repair(&self, stale: Vec<String>, merged: Object, at: &ReadKey) {
        let item = Item {
            bucket: at.bucket.clone(),
            key: at.key.clone(),
            object: merged.encode(),
        };
        let me = &self.inner.cfg.id;
        // A single item goes alone; one too large for any frame can't go at all.
        let sendable = item_bytes(&item) <= self.reply_budget();
        for node in stale {
            let ok = if node == *me {
                self.inner
                    .replica
                    .apply(at.skey.clone(), Change::Merge(merged.clone()))
                    .await
                    .is_ok()
            } else if !sendable {
                tracing::warn!(
                    %node,
                    bytes = item_bytes(&item),
                    "read repair skipped: the merged version is larger than a frame; resolve the key's siblings"
                );
                false
            } else {
                let deadline = self.inner.cfg.timeouts.request;
                self.call(&node, Replicate(item.clone()), deadline, Priority::Client)
                    .await
                    .is_ok()
            };
            if ok {
                Stats::add(
                    &self.inner.stats.read_repairs,
                    "chorus_read_repairs_total",
                    1,
                );
                tracing::debug!(%node, "read repair");
            }
        }
    }
}
