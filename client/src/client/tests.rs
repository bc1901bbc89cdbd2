use super::*;
use chorus_ring::{Member, Ring};

/// Five members, 64 partitions, N = 3; also the ring of the report tests.
pub(crate) fn info(down: &[&str]) -> RingInfo {
    let members = (1..=5)
        .map(|k| Member {
            id: format!("n{k}"),
            zone: None,
        })
        .collect();
    RingInfo {
        ring: Ring::new(64, 3, members).expect("ring"),
        addresses: (1..=5)
            .map(|k| (format!("n{k}"), format!("127.0.0.1:{}", 7000 + k)))
            .collect(),
        default_n: 3,
        bucket_n: Vec::new(),
        down: down.iter().map(|s| s.to_string()).collect(),
    }
}

fn port_of(info: &RingInfo, id: &str) -> u16 {
    resolve(info.address_of(id).expect("address"))
        .expect("addr")
        .port()
}

#[test]
fn routes_to_the_preference_list_first_and_down_nodes_last() {
    let seed: SocketAddr = "127.0.0.9:9".parse().expect("addr");
    let up = info(&[]);
    let p = up.ring.partition_of(b"b", b"k");
    let order: Vec<String> = up.ring.order(p).into_iter().map(str::to_string).collect();
    let got = route(Some(&up), b"b", b"k", &[seed]);
    let want: Vec<u16> = order.iter().map(|id| port_of(&up, id)).collect();
    assert_eq!(
        got.iter().map(|a| a.port()).take(5).collect::<Vec<_>>(),
        want
    );
    assert_eq!(got.last(), Some(&seed));

    // The first replica reported down goes after every live node.
    let down = info(&[order[0].as_str()]);
    let got = route(Some(&down), b"b", b"k", &[seed]);
    assert_eq!(got[0].port(), port_of(&down, &order[1]));
    assert_eq!(got[4].port(), port_of(&down, &order[0]));

    // Without routing information, the seeds.
    assert_eq!(route(None, b"b", b"k", &[seed]), vec![seed]);
}

#[test]
fn context_strings_round_trip_and_garbage_is_refused() {
    let c = CausalContext::from_bytes(vec![1, 2, 3, 250]);
    assert_eq!(c.to_string().parse::<CausalContext>().expect("parse"), c);
    assert!("!!".parse::<CausalContext>().is_err());
    assert!("".parse::<CausalContext>().expect("empty").is_empty());
}
