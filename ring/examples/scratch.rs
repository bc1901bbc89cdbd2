use chorus_ring::{Member, Ring};
use std::collections::BTreeMap;
fn main() {
    let z = |id: &str, zone: Option<u8>| Member {
        id: id.into(),
        zone: zone.map(|z| format!("zone-{z}")),
    };
    let all = vec![
        z("a", Some(2)),
        z("a-", Some(2)),
        z("a--", Some(2)),
        z("a0", Some(2)),
        z("a1", None),
        z("aa", None),
        z("ab", Some(2)),
        z("ac", None),
        z("b", None),
        z("c", None),
    ];
    let prev = Ring::new(256, 2, all[1..].to_vec()).unwrap();
    let next = prev.rebalance(all.clone()).unwrap();
    println!("prev {:?}", prev.shares(2));
    println!("next {:?}", next.shares(2));
    let moves = prev.diff(&next, 2);
    let g: usize = moves.iter().map(|m| m.gained.len()).sum();
    let before: BTreeMap<String, usize> = prev.shares(2).into_iter().collect();
    let forced: usize = next
        .shares(2)
        .iter()
        .map(|(id, c)| c.saturating_sub(*before.get(id).unwrap_or(&0)))
        .sum();
    println!("gained {g} forced {forced}");
    let mut pairs = BTreeMap::new();
    for m in &moves {
        *pairs.entry((m.gained.clone(), m.lost.clone())).or_insert(0) += 1;
    }
    for (k, v) in pairs {
        println!("{k:?}: {v}");
    }
    // rows without zone2 in prev
    let no_z2 = (0..256)
        .filter(|&p| {
            prev.preference_list(p, 2)
                .iter()
                .all(|id| prev.member(id).unwrap().zone.is_none())
        })
        .count();
    println!("prev rows without zone-2: {no_z2}");
}
