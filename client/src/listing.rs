//! Listing a bucket's keys a page at a time, and truncating a bucket (admin).

use crate::client::{unexpected, Client, Error};
use crate::proto::{Request, Response};

/// One page of a bucket's keys, in byte order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<Vec<u8>>,
    /// Pass to the next call's `after` for the following page; `None` when done.
    pub next: Option<String>,
}

impl Client {
    /// A page of the keys of `bucket` that start with `prefix`, after the page whose
    /// `next` token is `after`, at most `limit` (0: the node's default of 1,000; at most
    /// 10,000). Asks one replica of every partition: a tool for operators and bulk jobs,
    /// not for the request path.
    pub async fn keys(
        &self,
        bucket: impl AsRef<[u8]>,
        prefix: impl AsRef<[u8]>,
        limit: u32,
        after: Option<&str>,
    ) -> Result<KeyPage, Error> {
        let targets = self.all_targets().await;
        let req = Request::ListKeys {
            bucket: bucket.as_ref().to_vec(),
            prefix: prefix.as_ref().to_vec(),
            limit,
            after: after.map(str::to_string),
        };
        match self.call(&targets, &req).await? {
            Response::Keys { keys, next } => Ok(KeyPage {
                keys: keys.into_iter().map(|k| k.into_vec()).collect(),
                next,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes every key of `bucket`, through ordinary tombstones; returns the keys
    /// deleted (per partition, the most any replica deleted). Every owner of every partition must be up; if
    /// one isn't, the error names it, and a retry is safe. Needs an admin certificate.
    pub async fn truncate(&self, bucket: impl AsRef<[u8]>) -> Result<u64, Error> {
        let targets = self.all_targets().await;
        let req = Request::Truncate {
            bucket: bucket.as_ref().to_vec(),
        };
        match self.call(&targets, &req).await? {
            Response::Truncated { deleted } => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }
}
