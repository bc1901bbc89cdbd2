//! The nemesis: the kinds of fault, injecting one into the cluster, healing it, and the
//! faults log.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::Client;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterError};
use crate::workload::Rng;

/// A kind of fault the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Kill,
    Pause,
    PartitionOne,
    PartitionMajority,
    PartitionBridge,
    Loss,
    Delay,
    ClockSkew,
    Wipe,
    JoinLeave,
    /// A node's data directory is put back to an older copy of itself.
    Restore,
    /// One replica is down while another loses its disk.
    WipeWhileDown,
    /// Many concurrent read-modify-writes of one key.
    HotKeys,
    /// Large values written while a replica is down, so they travel as hints.
    LargeValues,
}

impl Fault {
    /// Whether the fault destroys or rolls back a node's data directory.
    pub fn loses_a_disk(self) -> bool {
        matches!(self, Fault::Wipe | Fault::Restore | Fault::WipeWhileDown)
    }

    pub const ALL: [Fault; 14] = [
        Fault::Kill,
        Fault::Pause,
        Fault::PartitionOne,
        Fault::PartitionMajority,
        Fault::PartitionBridge,
        Fault::Loss,
        Fault::Delay,
        Fault::ClockSkew,
        Fault::Wipe,
        Fault::JoinLeave,
        Fault::Restore,
        Fault::WipeWhileDown,
        Fault::HotKeys,
        Fault::LargeValues,
    ];
}

/// Switches the nemesis flips for workloads that only run during a fault.
#[derive(Clone, Default)]
pub(super) struct Switches {
    pub(super) hot: Arc<AtomicBool>,
    pub(super) large: Arc<AtomicBool>,
}

/// Concurrent writers on the hot key while the hot-keys fault lasts.
pub(super) const HOT_WORKERS: usize = 16;
pub(super) fn log_fault(out: &mut std::fs::File, start: Instant, what: &str, detail: Value) {
    let line =
        json!({"time_ms": start.elapsed().as_millis() as u64, "event": what, "detail": detail});
    let _ = writeln!(out, "{line}");
}

/// Picks and applies one fault; returns a description and how to undo it.
pub(super) async fn inject(
    c: &mut Cluster,
    fault: Fault,
    rng: &mut Rng,
    switches: &Switches,
    fault_time: Duration,
) -> Result<Value, ClusterError> {
    let n = c.initial;
    let victim = rng.below(n);
    let detail = match fault {
        Fault::Kill => {
            c.kill(victim);
            json!({"node": c.nodes[victim].id})
        }
        Fault::Pause => {
            c.pause(victim);
            json!({"node": c.nodes[victim].id})
        }
        Fault::PartitionOne => {
            c.relays.isolate(victim);
            json!({"isolated": c.nodes[victim].id})
        }
        Fault::PartitionMajority => {
            let mut all: Vec<usize> = (0..n).collect();
            all.rotate_left(victim);
            let minority: Vec<usize> = all[..n / 2].to_vec();
            let majority: Vec<usize> = all[n / 2..].to_vec();
            c.relays.partition(&[minority.clone(), majority.clone()]);
            json!({"minority": minority, "majority": majority})
        }
        Fault::PartitionBridge => {
            // Overlapping majorities: the bridge node sees both halves, the halves not each other.
            let mut faults = chorus_verify::relay::Faults::default();
            let others: Vec<usize> = (0..n).filter(|i| *i != victim).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for a in left {
                for b in right {
                    use chorus_verify::relay::Party::Node;
                    faults.blocked.insert((Node(*a), Node(*b)));
                    faults.blocked.insert((Node(*b), Node(*a)));
                }
            }
            c.relays.set(faults);
            json!({"bridge": victim, "left": left, "right": right})
        }
        Fault::Loss => {
            c.relays.set_loss(0.2);
            json!({"loss": 0.2})
        }
        Fault::Delay => {
            c.relays.set_delay(Duration::from_millis(50));
            json!({"delay_ms": 50})
        }
        Fault::ClockSkew => {
            let skew = if rng.below(2) == 0 { 90_000 } else { -90_000 };
            c.kill(victim);
            c.nodes[victim].clock_offset_ms = skew;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id, "offset_ms": skew})
        }
        Fault::Wipe => {
            c.wipe(victim)?;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id})
        }
        Fault::Restore => {
            // Copy the data directory of a cleanly stopped node, let it run on (writes land
            // after the copy), then stop it and put the copy back: the backup-and-restore an
            // operator does.
            c.stop(victim);
            c.snapshot(victim)?;
            c.start(victim)?;
            tokio::time::sleep(fault_time / 2).await;
            c.stop(victim);
            c.restore(victim)?;
            c.start(victim)?;
            json!({"node": c.nodes[victim].id})
        }
        Fault::WipeWhileDown => {
            let other = (victim + 1) % n;
            c.kill(victim);
            c.wipe(other)?;
            c.start(other)?;
            json!({"down": c.nodes[victim].id, "wiped": c.nodes[other].id})
        }
        Fault::HotKeys => {
            switches.hot.store(true, Ordering::Relaxed);
            json!({"writers": HOT_WORKERS})
        }
        Fault::LargeValues => {
            c.kill(victim);
            switches.large.store(true, Ordering::Relaxed);
            json!({"down": c.nodes[victim].id})
        }
        Fault::JoinLeave => {
            // The spare node joins; it leaves again when this fault heals.
            let spare = n;
            if spare < c.nodes.len() && !c.running(spare) {
                c.start(spare)?;
                json!({"joined": c.nodes[spare].id})
            } else {
                json!({"skipped": "no spare node"})
            }
        }
    };
    Ok(detail)
}

/// Undoes whatever is in effect: restarts killed nodes, resumes paused ones, heals the
/// network, restores clocks, and walks a joined spare back out.
pub(super) async fn heal(
    c: &mut Cluster,
    fault: Fault,
    switches: &Switches,
) -> Result<(), ClusterError> {
    switches.hot.store(false, Ordering::Relaxed);
    switches.large.store(false, Ordering::Relaxed);
    c.relays.heal();
    for i in 0..c.initial {
        c.resume(i);
        if c.nodes[i].clock_offset_ms != 0 {
            c.kill(i);
            c.nodes[i].clock_offset_ms = 0;
        }
        if !c.running(i) {
            c.start(i)?;
        }
    }
    if fault == Fault::JoinLeave && c.nodes.len() > c.initial && c.running(c.initial) {
        let spare = c.nodes[c.initial].id.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let the join settle, then ask the spare to leave and wait for it to be out.
        loop {
            if let Ok(cfg) = c.admin_config_for(0) {
                if let Ok(cl) = Client::connect(cfg).await {
                    if let Ok(st) = cl.status().await {
                        if st.transfers_pending == 0 && cl.leave(&spare).await.is_ok() {
                            break;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        loop {
            let left = match c.client_config_for(0) {
                Ok(cfg) => match Client::connect(cfg).await {
                    Ok(cl) => cl.status().await.ok().is_some_and(|st| {
                        st.nodes.iter().any(|m| m.id == spare && m.status == "left")
                    }),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if left || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let spare_index = c.initial;
        c.kill(spare_index);
    }
    Ok(())
}
