//! Batch writes (`PutMany`): puts and deletes of many keys of one bucket in one client
//! request. Each key goes through the single write path ([`crate::coordinate_put`]: coordinate
//! here or forward to a replica, W per key), a bounded number at once; every key gets its
//! own outcome, so one refused key never hides behind the others' success.

use std::sync::Arc;

use chorus_client::proto::{ErrorKind, ErrorReply, KeyWritten, Level, Response, WriteItem};
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;

use crate::coordinate_put::Write;
use crate::node::Node;

/// Keys of one batch coordinated at once: enough to overlap the replica round trips, few
/// enough that one batch doesn't take the whole fan-out budget.
const CONCURRENT_WRITES: usize = 64;

impl Node {
    pub(crate) async fn put_many(
        &self,
        bucket: Vec<u8>,
        items: Vec<WriteItem>,
        w: Level,
        sloppy: bool,
        ttl_ms: Option<u64>,
    ) -> Response {
        if let Err(e) = self.check_batch(items.len()) {
            return Response::Error(e);
        }
        let gate = Arc::new(Semaphore::new(CONCURRENT_WRITES));
        let mut jobs = tokio::task::JoinSet::new();
        let keys: Vec<Vec<u8>> = items.iter().map(|i| i.key.clone()).collect();
        for (i, item) in items.into_iter().enumerate() {
            let this = self.clone();
            let gate = gate.clone();
            let bucket = bucket.clone();
            jobs.spawn(async move {
                let _permit = gate.acquire_owned().await;
                (i, this.put_one(bucket, item, w, sloppy, ttl_ms).await)
            });
        }
        let mut results: Vec<Option<Result<ByteBuf, ErrorReply>>> = vec![None; keys.len()];
        while let Some(done) = jobs.join_next().await {
            match done {
                Ok((i, r)) => results[i] = Some(r),
                Err(e) => tracing::error!(error = %e, "batch write task failed"),
            }
        }
        Response::WrittenMany(
            keys.into_iter()
                .zip(results)
                .map(|(key, result)| KeyWritten {
                    key,
                    result: result.unwrap_or_else(|| {
                        Err(ErrorReply {
                            kind: ErrorKind::Internal,
                            message: "write task failed; the write may have been applied".into(),
                        })
                    }),
                })
                .collect(),
        )
    }

    async fn put_one(
        &self,
        bucket: Vec<u8>,
        item: WriteItem,
        w: Level,
        sloppy: bool,
        ttl_ms: Option<u64>,
    ) -> Result<ByteBuf, ErrorReply> {
        let value = item.value.map(ByteBuf::into_vec);
        // The batch's TTL applies to its puts; its deletes have nothing to expire.
        let value_is_put = value.is_some();
        if let Some(v) = &value {
            self.check_value(v)?;
        }
        let write = Write {
            bucket,
            key: item.key,
            value,
            context: item.context,
            w,
            sloppy,
            ttl_ms: if value_is_put { ttl_ms } else { None },
        };
        match self.write(write, false).await {
            Response::Written { context } => Ok(ByteBuf::from(context)),
            Response::Error(e) => Err(e),
            other => Err(ErrorReply {
                kind: ErrorKind::Internal,
                message: format!("unexpected write answer {other:?}"),
            }),
        }
    }
}
