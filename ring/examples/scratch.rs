use chorus_ring::{Member, Ring};
fn main() {
    for (parts, m, r, zones) in [
        (65536u32, 12usize, 3usize, 0usize),
        (65536, 12, 5, 3),
        (65536, 100, 3, 0),
        (4096, 1024, 3, 0),
        (1024, 1024, 5, 7),
        (65536, 1024, 3, 0),
    ] {
        let all: Vec<Member> = (0..m)
            .map(|i| Member {
                id: format!("node-{i}"),
                zone: if zones > 0 {
                    Some(format!("z{}", i % zones))
                } else {
                    None
                },
            })
            .collect();
        let t = std::time::Instant::now();
        let ring = Ring::new(parts, r, all[..m - 1].to_vec()).unwrap();
        let t1 = t.elapsed();
        let next = ring.rebalance(all.clone()).unwrap();
        let t2 = t.elapsed() - t1;
        let back = next.rebalance(all[1..].to_vec()).unwrap();
        let t3 = t.elapsed() - t1 - t2;
        let g: usize = ring.diff(&next, r).iter().map(|x| x.gained.len()).sum();
        let g2: usize = next.diff(&back, r).iter().map(|x| x.gained.len()).sum();
        println!(
            "P {parts} m {m} r {r} zones {zones}: new {t1:?} add {t2:?} ({g}) remove {t3:?} ({g2})"
        );
    }
}
