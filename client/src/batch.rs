//! Batch reads and writes: many keys of one bucket in one request, with a result per key.

use crate::client::{into_result, unexpected, CausalContext, Client, Error, GetResult};
use crate::proto::{ErrorReply, Level, Request, Response, WriteItem};

/// One write of a batch: a put (`value` set) or a delete (`value` is `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Context of an earlier read: the write replaces what that read saw.
    pub context: Option<CausalContext>,
}

/// One key's result in a batch read.
#[derive(Debug)]
pub struct KeyGet {
    pub key: Vec<u8>,
    pub result: Result<GetResult, Error>,
}

/// One key's outcome in a batch write: the new version's context, or why it failed.
#[derive(Debug)]
pub struct KeyPut {
    pub key: Vec<u8>,
    pub result: Result<CausalContext, Error>,
}

impl Client {
    /// Reads several keys of a bucket in one request, each with read consistency `r`.
    /// Results come in the order of `keys`; a key that couldn't be read has its own error.
    /// The whole call fails only if no node takes the batch (or it is over the cluster's
    /// `limits.max_batch_keys`).
    pub async fn get_many<K: AsRef<[u8]>>(
        &self,
        bucket: impl AsRef<[u8]>,
        keys: &[K],
        r: Level,
    ) -> Result<Vec<KeyGet>, Error> {
        let bucket = bucket.as_ref().to_vec();
        let targets = self
            .batch_targets(&bucket, keys.first().map(AsRef::as_ref))
            .await;
        let req = Request::GetMany {
            bucket,
            keys: keys
                .iter()
                .map(|k| crate::proto::ByteBuf::from(k.as_ref().to_vec()))
                .collect(),
            r,
        };
        match self.call(&targets, &req).await? {
            Response::Values(v) if v.len() == keys.len() => Ok(v
                .into_iter()
                .map(|kv| KeyGet {
                    key: kv.key,
                    result: kv.result.map(GetResult::from).map_err(key_error),
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Writes (puts and deletes) several keys of a bucket in one request, each with write
    /// consistency `w`. Outcomes come in the order of `items`, one per key.
    pub async fn put_many(
        &self,
        bucket: impl AsRef<[u8]>,
        items: Vec<WriteEntry>,
        w: Level,
    ) -> Result<Vec<KeyPut>, Error> {
        self.put_many_with(bucket, items, w, None).await
    }

    /// [`Client::put_many`] with a TTL for every put of the batch (`None`: the bucket's
    /// default TTL, if any). A bad TTL fails the whole call before anything is sent.
    pub async fn put_many_with(
        &self,
        bucket: impl AsRef<[u8]>,
        items: Vec<WriteEntry>,
        w: Level,
        ttl: Option<std::time::Duration>,
    ) -> Result<Vec<KeyPut>, Error> {
        let ttl_ms = crate::client::checked_ttl_ms(ttl)?;
        let bucket = bucket.as_ref().to_vec();
        let count = items.len();
        let targets = self
            .batch_targets(&bucket, items.first().map(|i| i.key.as_slice()))
            .await;
        let req = Request::PutMany {
            bucket,
            items: items
                .into_iter()
                .map(|i| WriteItem {
                    key: i.key,
                    value: i.value.map(crate::proto::ByteBuf::from),
                    context: i.context.map(|c| c.as_bytes().to_vec()).unwrap_or_default(),
                })
                .collect(),
            w,
            sloppy: false,
            ttl_ms,
        };
        match self.call(&targets, &req).await? {
            Response::WrittenMany(v) if v.len() == count => Ok(v
                .into_iter()
                .map(|kw| KeyPut {
                    key: kw.key,
                    result: kw
                        .result
                        .map(|c| CausalContext::from_bytes(c.into_vec()))
                        .map_err(key_error),
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Any node coordinates a batch; a replica of its first key saves that key a hop.
    async fn batch_targets(
        &self,
        bucket: &[u8],
        first: Option<&[u8]>,
    ) -> Vec<std::net::SocketAddr> {
        self.targets_for(bucket, first.unwrap_or_default()).await
    }
}

fn key_error(e: ErrorReply) -> Error {
    match into_result(Response::Error(e)) {
        Err(e) => e,
        Ok(other) => unexpected(other),
    }
}
