//! Prints balance and movement figures for a few cluster sizes.
//!
//! `cargo run --release -p chorus-ring --example ring_stats [partitions] [replicas]`

use chorus_ring::{Member, Ring, RingError};

fn members(n: usize) -> Vec<Member> {
    (1..=n).map(|i| Member::new(format!("node-{i}"))).collect()
}

fn spread(ring: &Ring, n: usize) -> (usize, usize) {
    let s = ring.shares(n);
    let max = s.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let min = s.iter().map(|(_, c)| *c).min().unwrap_or(0);
    (min, max)
}

fn gained(a: &Ring, b: &Ring, n: usize) -> usize {
    a.diff(b, n).iter().map(|m| m.gained.len()).sum()
}

fn main() -> Result<(), RingError> {
    let mut args = std::env::args().skip(1);
    let parts: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let replicas: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    println!("P = {parts}, replicas = {replicas}");
    for m in [3, 4, 5, 8] {
        let ring = Ring::new(parts, replicas, members(m))?;
        let k = ring.balanced_slots();
        let shares: Vec<String> = (1..=k)
            .map(|n| {
                let (lo, hi) = spread(&ring, n);
                format!(
                    "n={n}: {lo}..{hi} (even {:.2})",
                    (parts as usize * n) as f64 / m as f64
                )
            })
            .collect();
        println!("m = {m}: {}", shares.join(", "));
    }
    for (from, to) in [(3, 4), (4, 3), (4, 5), (5, 4), (8, 9), (9, 8)] {
        let a = Ring::new(parts, replicas, members(from))?;
        let b = a.rebalance(members(to))?;
        let k = b.balanced_slots().max(a.balanced_slots());
        let counts: Vec<String> = (1..=k)
            .map(|n| format!("n={n}: {}", gained(&a, &b, n)))
            .collect();
        println!("{from} -> {to} nodes: gained slots {}", counts.join(", "));
    }
    Ok(())
}
