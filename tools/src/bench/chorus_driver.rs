//! The Chorus driver: gets and puts through the client, in the bench bucket, at the
//! requested R and W.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use chorus_client::{CausalContext, Client, Level, WriteOptions};

use super::driver::{Driver, DriverError};
use super::{key_name, BenchArgs};

pub struct ChorusDriver {
    client: Client,
    bucket: String,
    r: Level,
    w: Level,
    /// Latest context per key, so updates replace rather than pile up siblings.
    contexts: Mutex<HashMap<u64, CausalContext>>,
}

impl ChorusDriver {
    pub fn new(client: Client, args: &BenchArgs) -> ChorusDriver {
        ChorusDriver {
            client,
            bucket: args.bucket.clone(),
            r: args.r,
            w: args.w,
            contexts: Mutex::new(HashMap::new()),
        }
    }

    fn context(&self, k: u64) -> Option<CausalContext> {
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .cloned()
    }

    fn remember(&self, k: u64, ctx: CausalContext) {
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, ctx);
    }
}

impl Driver for ChorusDriver {
    /// A read's context covers every sibling it saw: the next update replaces them all.
    async fn read(&self, key: u64) -> Result<bool, DriverError> {
        let res = self.client.get(&self.bucket, key_name(key), self.r).await?;
        self.remember(key, res.context);
        Ok(res.found)
    }

    /// Writes with the key's latest context. Concurrent updates of a hot key from stale
    /// contexts leave siblings, as they would for any client; one refused for having too
    /// many is read and written again with the read's context (what an application does).
    async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        let mut opts = WriteOptions {
            context: self.context(key),
            w: self.w,
            sloppy: false,
            ttl: None,
        };
        let name = key_name(key);
        let ctx = match self
            .client
            .put_with(&self.bucket, &name, value.to_vec(), &opts)
            .await
        {
            Err(chorus_client::Error::BadRequest(m)) if m.contains("siblings") => {
                let res = self.client.get(&self.bucket, &name, self.r).await?;
                opts.context = Some(res.context);
                self.client
                    .put_with(&self.bucket, &name, value.to_vec(), &opts)
                    .await?
            }
            r => r?,
        };
        self.remember(key, ctx);
        Ok(())
    }

    /// The write carries the context the read returned.
    async fn read_modify_write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        let res = self.client.get(&self.bucket, key_name(key), self.r).await?;
        self.remember(key, res.context);
        self.write(key, value).await
    }

    fn read_level(&self) -> String {
        self.r.to_string()
    }

    fn write_level(&self) -> String {
        self.w.to_string()
    }
}
