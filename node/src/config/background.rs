//! Sections for the node's background work: gossip, the failure detector, read repair,
//! hinted handoff, anti-entropy, tombstone purging and partition transfers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transfers {
    /// Keys per transfer message.
    pub batch: usize,
    /// Pause between two transfer messages (throttle).
    #[serde(with = "duration")]
    pub pause: Duration,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            batch: 512,
            pause: Duration::from_millis(2),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gossip {
    /// How often the cluster state is exchanged with a few peers.
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for Gossip {
    fn default() -> Self {
        Gossip {
            interval: Duration::from_millis(500),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadRepair {
    pub enabled: bool,
    /// How long a read keeps listening for replicas that answer after the client got its
    /// reply, so they are repaired too.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Share of reads sent to all N replicas, so they can be compared and repaired. Other
    /// reads go to R replicas (the coordinator's own copy first), which is enough for R+W>N
    /// and costs fewer messages; anti-entropy covers what they don't compare.
    pub chance: f64,
    /// A read that hasn't reached R after this long is also sent to the replicas it skipped
    /// (and at once when a contacted replica fails).
    #[serde(with = "duration")]
    pub speculative_after: Duration,
}

impl Default for ReadRepair {
    fn default() -> Self {
        ReadRepair {
            enabled: true,
            window: Duration::from_secs(1),
            chance: 0.1,
            speculative_after: Duration::from_millis(50),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintedHandoff {
    pub enabled: bool,
    /// Hints older than this are dropped; anti-entropy repairs what they carried.
    #[serde(with = "duration")]
    pub expiry: Duration,
    /// Hints sent to a target in one message.
    pub batch: usize,
    /// How soon a failed replay is retried while the target is up.
    #[serde(with = "duration")]
    pub retry: Duration,
}

impl Default for HintedHandoff {
    fn default() -> Self {
        HintedHandoff {
            enabled: true,
            expiry: Duration::from_secs(3 * 3600),
            batch: 256,
            retry: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntiEntropy {
    pub enabled: bool,
    /// Time between exchange rounds.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Pause between two partitions' exchanges, so client traffic keeps priority.
    #[serde(with = "duration")]
    pub pause: Duration,
    /// Most keys repaired in one message.
    pub batch: usize,
}

impl Default for AntiEntropy {
    fn default() -> Self {
        AntiEntropy {
            enabled: true,
            interval: Duration::from_secs(600),
            pause: Duration::from_millis(5),
            batch: 256,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tombstones {
    /// A tombstone is purged only after this long, and only once every replica holds it.
    /// Keep it longer than `hinted_handoff.expiry`, so no hint older than the delete can
    /// arrive after the purge.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// How often purgeable tombstones are looked for.
    #[serde(with = "duration")]
    pub gc_interval: Duration,
}

impl Default for Tombstones {
    fn default() -> Self {
        Tombstones {
            grace: Duration::from_secs(4 * 3600),
            gc_interval: Duration::from_secs(60),
        }
    }
}
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureDetector {
    /// How often each peer is pinged.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A peer with no successful ping for this long is marked down.
    #[serde(with = "duration")]
    pub down_after: Duration,
}

impl Default for FailureDetector {
    fn default() -> Self {
        FailureDetector {
            interval: Duration::from_millis(300),
            down_after: Duration::from_millis(1500),
        }
    }
}
