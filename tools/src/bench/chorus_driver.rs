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
    async fn read(&self, key: u64) -> Result<bool, DriverError> {
        let res = self.client.get(&self.bucket, key_name(key), self.r).await?;
        Ok(res.found)
    }

    async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        let opts = WriteOptions {
            context: self.context(key),
            w: self.w,
            sloppy: false,
        };
        let ctx = self
            .client
            .put_with(&self.bucket, key_name(key), value.to_vec(), &opts)
            .await?;
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
