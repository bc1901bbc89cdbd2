use super::rules::*;
use super::*;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long a datagram that should not arrive is waited for.
const ABSENT: Duration = Duration::from_millis(300);
/// How long a datagram that should arrive is waited for at most.
const PRESENT: Duration = Duration::from_secs(3);

/// A fake node: answers `ping<tag>` with `pong<tag>` and reports every datagram it
/// receives (pings and pongs) in `inbox`. Its socket can also send, as a node's QUIC
/// endpoint does.
struct TestNode {
    sock: Arc<UdpSocket>,
    addr: SocketAddr,
    inbox: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    task: JoinHandle<()>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn test_node_on(addr: SocketAddr) -> io::Result<TestNode> {
    let sock = Arc::new(UdpSocket::bind(addr).await?);
    let addr = sock.local_addr()?;
    let (tx, inbox) = mpsc::unbounded_channel();
    let echo = sock.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let Ok((len, src)) = echo.recv_from(&mut buf).await else {
                continue;
            };
            let data = buf[..len].to_vec();
            if let Some(tag) = data.strip_prefix(b"ping") {
                let reply = [b"pong", tag].concat();
                let _ = echo.send_to(&reply, src).await;
            }
            let _ = tx.send((src, data));
        }
    });
    Ok(TestNode {
        sock,
        addr,
        inbox,
        task,
    })
}

async fn test_node() -> TestNode {
    test_node_on("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn setup(n: usize) -> (RelayNet, Vec<TestNode>) {
    setup_with_idle(n, IDLE_TIMEOUT).await
}

async fn setup_with_idle(n: usize, idle: Duration) -> (RelayNet, Vec<TestNode>) {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(test_node().await);
    }
    let pairs = nodes
        .iter()
        .map(|node| ("127.0.0.1:0".parse().unwrap(), node.addr))
        .collect();
    let net = RelayNet::start_with_idle_timeout(pairs, idle)
        .await
        .unwrap();
    (net, nodes)
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Waits up to `wait` for an inbox entry with exactly `payload`, skipping others.
async fn inbox_get(node: &mut TestNode, payload: &[u8], wait: Duration) -> Option<SocketAddr> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, node.inbox.recv()).await {
            Ok(Some((src, data))) if data == payload => return Some(src),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Node `from` pings relay `to` with a fresh tag; the round-trip time if the pong came
/// back within `wait`.
async fn node_ping(
    net: &RelayNet,
    nodes: &mut [TestNode],
    from: usize,
    to: usize,
    wait: Duration,
) -> Option<Duration> {
    static TAG: AtomicU64 = AtomicU64::new(0);
    let tag = format!("-n{from}-n{to}-{}", TAG.fetch_add(1, Ordering::Relaxed));
    let start = Instant::now();
    nodes[from]
        .sock
        .send_to(format!("ping{tag}").as_bytes(), net.relay_addr(to))
        .await
        .unwrap();
    let src = inbox_get(&mut nodes[from], format!("pong{tag}").as_bytes(), wait).await?;
    assert_eq!(
        src,
        net.relay_addr(to),
        "the pong comes from the relay address"
    );
    Some(start.elapsed())
}

/// The client pings relay `to`; the round-trip time if the pong came back in `wait`.
async fn client_ping(
    net: &RelayNet,
    client: &UdpSocket,
    to: usize,
    wait: Duration,
) -> Option<Duration> {
    static TAG: AtomicU64 = AtomicU64::new(0);
    let tag = format!("-c-n{to}-{}", TAG.fetch_add(1, Ordering::Relaxed));
    let start = Instant::now();
    client
        .send_to(format!("ping{tag}").as_bytes(), net.relay_addr(to))
        .await
        .unwrap();
    let expected = format!("pong{tag}");
    let mut buf = vec![0u8; BUF_SIZE];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.recv_from(&mut buf)).await {
            Ok(Ok((len, src))) if &buf[..len] == expected.as_bytes() => {
                assert_eq!(
                    src,
                    net.relay_addr(to),
                    "the pong comes from the relay address"
                );
                return Some(start.elapsed());
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

fn pairs(list: &[(Party, Party)]) -> HashSet<(Party, Party)> {
    list.iter().copied().collect()
}

use Party::{Client, Node};

#[tokio::test]
async fn client_round_trip_through_each_relay() {
    let (net, mut nodes) = setup(2).await;
    let client = client().await;
    for to in 0..2 {
        assert!(
            client_ping(&net, &client, to, PRESENT).await.is_some(),
            "client via relay {to}"
        );
    }
    // Payloads arrive unchanged, in both directions; the node sees the relay's session
    // socket as the sender, not the client.
    client
        .send_to(b"ping-exact", net.relay_addr(1))
        .await
        .unwrap();
    let src = inbox_get(&mut nodes[1], b"ping-exact", PRESENT)
        .await
        .unwrap();
    assert_ne!(src, client.local_addr().unwrap());
    assert!(src.ip().is_loopback());
    let mut buf = [0u8; 64];
    let (len, from) = timeout(PRESENT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..len], from), (&b"pong-exact"[..], net.relay_addr(1)));
    let (forwarded, dropped) = net.stats();
    assert_eq!((forwarded, dropped), (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_to_node_round_trip_both_ways() {
    let (net, mut nodes) = setup(2).await;
    assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
    assert!(node_ping(&net, &mut nodes, 1, 0, PRESENT).await.is_some());
    // Node 1 saw node 0's ping from a relay session address, not node 0's own.
    nodes[0]
        .sock
        .send_to(b"ping-seen", net.relay_addr(1))
        .await
        .unwrap();
    let src = inbox_get(&mut nodes[1], b"ping-seen", PRESENT)
        .await
        .unwrap();
    assert_ne!(src, nodes[0].addr);
    assert!(src.ip().is_loopback());
}

#[tokio::test]
async fn node_source_is_classified_as_node() {
    let (net, mut nodes) = setup(3).await;
    let client = client().await;
    assert_eq!(net.shared.party_of(nodes[0].addr), Node(0));
    assert_eq!(net.shared.party_of(nodes[2].addr), Node(2));
    assert_eq!(net.shared.party_of(client.local_addr().unwrap()), Client);

    // Only node 0 → node 1 is blocked: the node socket is recognised as Node(0).
    net.set(Faults {
        blocked: pairs(&[(Node(0), Node(1))]),
        ..Faults::default()
    });
    assert!(node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none());
    assert!(node_ping(&net, &mut nodes, 2, 1, PRESENT).await.is_some());
    assert!(client_ping(&net, &client, 1, PRESENT).await.is_some());

    // Only clients → node 1 is blocked: node 0 passes, the client does not.
    net.set(Faults {
        blocked: pairs(&[(Client, Node(1))]),
        ..Faults::default()
    });
    assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
    assert!(client_ping(&net, &client, 1, ABSENT).await.is_none());
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
}

#[tokio::test]
async fn reply_direction_is_judged_separately() {
    let (net, mut nodes) = setup(2).await;
    net.set(Faults {
        blocked: pairs(&[(Node(1), Node(0))]),
        ..Faults::default()
    });
    // Node 0's ping reaches node 1, but node 1's pong to node 0 is dropped.
    nodes[0]
        .sock
        .send_to(b"ping-oneway", net.relay_addr(1))
        .await
        .unwrap();
    assert!(inbox_get(&mut nodes[1], b"ping-oneway", PRESENT)
        .await
        .is_some());
    assert!(inbox_get(&mut nodes[0], b"pong-oneway", ABSENT)
        .await
        .is_none());
    // And node 1 cannot reach node 0 at all.
    assert!(node_ping(&net, &mut nodes, 1, 0, ABSENT).await.is_none());
    assert_eq!(net.stats().1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_drops_between_groups_and_heal_restores() {
    let (net, mut nodes) = setup(2).await;
    let client = client().await;
    net.partition(&[vec![0], vec![1]]);
    assert_eq!(
        net.faults().blocked,
        pairs(&[(Node(0), Node(1)), (Node(1), Node(0))])
    );
    assert!(node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none());
    assert!(node_ping(&net, &mut nodes, 1, 0, ABSENT).await.is_none());
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    assert!(client_ping(&net, &client, 1, PRESENT).await.is_some());
    assert_eq!(net.stats().1, 2);

    net.heal();
    assert!(net.faults().blocked.is_empty());
    assert!(node_ping(&net, &mut nodes, 0, 1, PRESENT).await.is_some());
    assert!(node_ping(&net, &mut nodes, 1, 0, PRESENT).await.is_some());
}

#[tokio::test]
async fn partition_rules() {
    let (net, _nodes) = setup(4).await;
    let both = |a, b| [(Node(a), Node(b)), (Node(b), Node(a))];
    net.set_loss(0.25);
    net.partition(&[vec![0, 1], vec![2, 3]]);
    let expected: Vec<_> = [both(0, 2), both(0, 3), both(1, 2), both(1, 3)].concat();
    assert_eq!(net.faults().blocked, pairs(&expected));
    assert_eq!(net.faults().loss, 0.25, "partition keeps loss");

    // A bridge: 1 sees both sides, 0 and 2 don't see each other; 3 is unlisted.
    net.partition(&[vec![0, 1], vec![1, 2]]);
    assert_eq!(net.faults().blocked, pairs(&both(0, 2)));

    net.isolate(3);
    let expected: Vec<_> = [both(3, 0), both(3, 1), both(3, 2)].concat();
    assert_eq!(net.faults().blocked, pairs(&expected));

    // Out-of-range indices are ignored.
    net.partition(&[vec![0, 9], vec![1]]);
    assert_eq!(net.faults().blocked, pairs(&both(0, 1)));
    net.partition(&[]);
    assert!(net.faults().blocked.is_empty());
}

#[tokio::test]
async fn isolate_cuts_one_node_from_the_rest() {
    let (net, mut nodes) = setup(3).await;
    let client = client().await;
    net.isolate(0);
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        assert!(
            node_ping(&net, &mut nodes, from, to, ABSENT)
                .await
                .is_none(),
            "{from} -> {to}"
        );
    }
    assert!(node_ping(&net, &mut nodes, 1, 2, PRESENT).await.is_some());
    assert!(node_ping(&net, &mut nodes, 2, 1, PRESENT).await.is_some());
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
}

#[tokio::test]
async fn loss_one_drops_everything_between_nodes_and_zero_nothing() {
    let (net, mut nodes) = setup(2).await;
    let client = client().await;
    net.set_loss(1.0);
    for i in 0..20 {
        nodes[0]
            .sock
            .send_to(format!("ping-loss{i}").as_bytes(), net.relay_addr(1))
            .await
            .unwrap();
    }
    assert!(
        client_ping(&net, &client, 1, PRESENT).await.is_some(),
        "clients are unaffected"
    );
    tokio::time::sleep(ABSENT).await;
    while let Ok((src, data)) = nodes[1].inbox.try_recv() {
        assert_ne!(
            data.get(..9),
            Some(&b"ping-loss"[..]),
            "lost datagram from {src} arrived"
        );
    }
    assert_eq!(net.stats().1, 20);

    net.set_loss(0.0);
    for i in 0..20 {
        nodes[0]
            .sock
            .send_to(format!("ping-kept{i}").as_bytes(), net.relay_addr(1))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let pong = format!("pong-kept{i}");
        assert!(
            inbox_get(&mut nodes[0], pong.as_bytes(), PRESENT)
                .await
                .is_some(),
            "{pong}"
        );
    }
    assert_eq!(net.stats().1, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_between_nodes_only() {
    let (net, mut nodes) = setup(2).await;
    let client = client().await;
    let delay = Duration::from_millis(150);
    net.set_delay(delay);
    // The ping is delayed at relay 1 (0 → 1) and the pong too (1 → 0).
    let rtt = node_ping(&net, &mut nodes, 0, 1, PRESENT).await.unwrap();
    assert!(rtt >= 2 * delay, "node rtt {rtt:?}");
    assert!(rtt < 2 * delay + Duration::from_secs(1), "node rtt {rtt:?}");
    let rtt = client_ping(&net, &client, 1, PRESENT).await.unwrap();
    assert!(rtt < delay, "client rtt {rtt:?}");

    net.set_delay(Duration::ZERO);
    let rtt = node_ping(&net, &mut nodes, 0, 1, PRESENT).await.unwrap();
    assert!(rtt < delay, "undelayed node rtt {rtt:?}");
}

#[tokio::test]
async fn delayed_datagrams_do_not_block_the_relay() {
    let (net, mut nodes) = setup(2).await;
    let client = client().await;
    net.set_delay(Duration::from_millis(400));
    nodes[0]
        .sock
        .send_to(b"ping-slow", net.relay_addr(1))
        .await
        .unwrap();
    // While that datagram waits, the same relay serves a client at once.
    let rtt = client_ping(&net, &client, 1, PRESENT).await.unwrap();
    assert!(rtt < Duration::from_millis(300), "client rtt {rtt:?}");
    assert!(inbox_get(&mut nodes[0], b"pong-slow", PRESENT)
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_keeps_datagram_order() {
    let (net, mut nodes) = setup(2).await;
    net.set_delay(Duration::from_millis(20));
    let count = 300u32;
    for i in 0..count {
        let payload = [&b"seq"[..], &i.to_be_bytes()].concat();
        nodes[0]
            .sock
            .send_to(&payload, net.relay_addr(1))
            .await
            .unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let mut seen = Vec::new();
    while seen.len() < count as usize {
        let (_, data) = timeout(PRESENT, nodes[1].inbox.recv())
            .await
            .unwrap()
            .unwrap();
        if let Some(seq) = data.strip_prefix(b"seq") {
            seen.push(u32::from_be_bytes(seq.try_into().unwrap()));
        }
    }
    assert_eq!(
        seen,
        (0..count).collect::<Vec<_>>(),
        "delayed datagrams were reordered"
    );
}

/// Negative control: the "not received within ABSENT" check used by the partition
/// tests does catch a relay that forwards blocked traffic.
#[tokio::test]
async fn negative_control_partition_check_detects_a_leaky_relay() {
    let (net, mut nodes) = setup(2).await;
    net.partition(&[vec![0], vec![1]]);
    assert!(
        node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none(),
        "blocked"
    );

    // Same partition, but the relay ignores the rules: the same check sees the leak.
    net.shared.bypass.store(true, Ordering::Relaxed);
    assert!(
        node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_some(),
        "leak detected"
    );
    net.shared.bypass.store(false, Ordering::Relaxed);
    assert!(
        node_ping(&net, &mut nodes, 0, 1, ABSENT).await.is_none(),
        "blocked again"
    );

    // And traffic that bypasses the relay altogether is seen too.
    nodes[0]
        .sock
        .send_to(b"ping-direct", nodes[1].addr)
        .await
        .unwrap();
    assert!(inbox_get(&mut nodes[1], b"ping-direct", ABSENT)
        .await
        .is_some());
}

#[tokio::test]
async fn odd_datagrams_are_forwarded_intact() {
    let (net, mut nodes) = setup(1).await;
    let client = client().await;
    let big: Vec<u8> = (0..60_000u32).map(|i| (i * 7) as u8).collect();
    let junk = [0xffu8, 0, 1, 2, 0x80];
    for payload in [&[][..], &big[..], &junk[..]] {
        client.send_to(payload, net.relay_addr(0)).await.unwrap();
        assert!(
            inbox_get(&mut nodes[0], payload, PRESENT).await.is_some(),
            "len {}",
            payload.len()
        );
    }
    let big_ping = [&b"ping"[..], &big].concat();
    client.send_to(&big_ping, net.relay_addr(0)).await.unwrap();
    let mut buf = vec![0u8; BUF_SIZE];
    let (len, _) = timeout(PRESENT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], [&b"pong"[..], &big].concat());
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
}

#[tokio::test]
async fn sessions_are_per_source_and_expire_when_idle() {
    let (net, mut nodes) = setup_with_idle(1, Duration::from_millis(200)).await;
    let (a, b) = (client().await, client().await);
    a.send_to(b"a1", net.relay_addr(0)).await.unwrap();
    let first = inbox_get(&mut nodes[0], b"a1", PRESENT).await.unwrap();
    a.send_to(b"a2", net.relay_addr(0)).await.unwrap();
    assert_eq!(
        inbox_get(&mut nodes[0], b"a2", PRESENT).await,
        Some(first),
        "same session"
    );
    b.send_to(b"b1", net.relay_addr(0)).await.unwrap();
    let other = inbox_get(&mut nodes[0], b"b1", PRESENT).await.unwrap();
    assert_ne!(other, first, "one session per source");
    assert_eq!(net.session_count(), 2);

    let deadline = Instant::now() + Duration::from_secs(3);
    while net.session_count() > 0 {
        assert!(Instant::now() < deadline, "idle sessions were not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new datagram opens a new session and goes through.
    assert!(client_ping(&net, &a, 0, PRESENT).await.is_some());
    assert_eq!(net.session_count(), 1);
}

#[tokio::test]
async fn survives_a_node_going_down_and_coming_back() {
    let (net, mut nodes) = setup(1).await;
    let client = client().await;
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    let addr = nodes[0].addr;
    drop(nodes.pop());
    // Nothing listens on the node's address now: sends are refused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        assert!(client_ping(&net, &client, 0, Duration::from_millis(100))
            .await
            .is_none());
    }
    // The node comes back on the same address (the old socket closes asynchronously).
    let deadline = Instant::now() + Duration::from_secs(3);
    let node = loop {
        match test_node_on(addr).await {
            Ok(node) => break node,
            Err(e) => assert!(Instant::now() < deadline, "rebinding {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes.push(node);
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    assert!(net.errors() >= 1, "refusals are counted as errors");
}

#[tokio::test]
async fn start_reports_a_failed_bind() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let real: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let nodes = vec![("127.0.0.1:0".parse().unwrap(), real), (taken_addr, real)];
    match RelayNet::start(nodes).await {
        Err(RelayError::Bind { node, addr, .. }) => assert_eq!((node, addr), (1, taken_addr)),
        other => panic!("expected a bind error, got {other:?}"),
    }
    let empty = RelayNet::start(Vec::new()).await.unwrap();
    assert_eq!(empty.stats(), (0, 0));
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    use std::future::Future;
    // Polled by hand with a no-op waker, outside any tokio runtime.
    let fut = RelayNet::start(vec![(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    )]);
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(RelayError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
    }
}

#[tokio::test]
async fn shutdown_stops_forwarding_and_frees_the_ports() {
    let (net, _nodes) = setup(2).await;
    let client = client().await;
    assert!(client_ping(&net, &client, 0, PRESENT).await.is_some());
    net.set_delay(Duration::from_secs(30));
    net.shutdown();
    net.shutdown();
    assert!(client_ping(&net, &client, 0, ABSENT).await.is_none());
    for addr in net.relay_addrs() {
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Err(e) = UdpSocket::bind(addr).await {
            assert!(
                Instant::now() < deadline,
                "relay port {addr} still bound: {e}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn drop_frees_the_ports() {
    let (net, mut nodes) = setup(2).await;
    net.set_delay(Duration::from_secs(30));
    // Leave a session and a delayed datagram behind.
    nodes[0]
        .sock
        .send_to(b"ping-late", net.relay_addr(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addrs = net.relay_addrs().to_vec();
    drop(net);
    for addr in addrs {
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Err(e) = UdpSocket::bind(addr).await {
            assert!(
                Instant::now() < deadline,
                "relay port {addr} still bound: {e}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        inbox_get(&mut nodes[1], b"ping-late", Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[test]
fn decide_rules() {
    let never = || -> f64 { panic!("sampled") };
    let mut faults = Faults::default();
    assert_eq!(
        decide(&faults, Node(0), Node(1), never),
        Some(Duration::ZERO)
    );
    assert_eq!(
        decide(&faults, Client, Node(1), never),
        Some(Duration::ZERO)
    );

    faults.blocked = pairs(&[(Client, Node(1)), (Node(1), Client), (Node(0), Node(1))]);
    assert_eq!(decide(&faults, Client, Node(1), never), None);
    assert_eq!(decide(&faults, Node(1), Client, never), None);
    assert_eq!(decide(&faults, Node(0), Node(1), never), None);
    assert_eq!(
        decide(&faults, Node(1), Node(0), never),
        Some(Duration::ZERO)
    );
    assert_eq!(
        decide(&faults, Client, Node(0), never),
        Some(Duration::ZERO)
    );

    faults.blocked.clear();
    faults.delay = Duration::from_millis(7);
    faults.loss = 0.5;
    assert_eq!(decide(&faults, Node(0), Node(1), || 0.49), None);
    assert_eq!(
        decide(&faults, Node(0), Node(1), || 0.5),
        Some(faults.delay)
    );
    assert_eq!(
        decide(&faults, Node(2), Node(2), || 0.9),
        Some(faults.delay)
    );
    assert_eq!(
        decide(&faults, Client, Node(1), never),
        Some(Duration::ZERO),
        "clients unaffected"
    );
    assert_eq!(
        decide(&faults, Node(1), Client, never),
        Some(Duration::ZERO),
        "clients unaffected"
    );

    for (loss, dropped) in [
        (f64::NAN, false),
        (-1.0, false),
        (0.0, false),
        (1.0, true),
        (7.0, true),
    ] {
        faults.loss = loss;
        let got = decide(&faults, Node(0), Node(1), || 0.999_999);
        assert_eq!(got.is_none(), dropped, "loss {loss}");
    }
}

#[test]
fn rng_is_deterministic_uniform_and_per_node() {
    let (a, b, c) = (Rng::new(0), Rng::new(0), Rng::new(1));
    let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
    let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
    let zs: Vec<f64> = (0..1000).map(|_| c.next_f64()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
    assert!(xs.iter().chain(&zs).all(|x| (0.0..1.0).contains(x)));

    let faults = Faults {
        loss: 0.3,
        ..Faults::default()
    };
    for node in [0, 1, 2, 1000] {
        let rng = Rng::new(node);
        let lost = (0..20_000)
            .filter(|_| decide(&faults, Node(0), Node(1), || rng.next_f64()).is_none())
            .count();
        assert!(
            (5_400..6_600).contains(&lost),
            "node {node}: lost {lost} of 20000 at 0.3"
        );
    }
}

#[test]
fn node_addresses_match_sources() {
    let src: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    assert!(is_node_addr(src, src));
    assert!(is_node_addr("0.0.0.0:7001".parse().unwrap(), src));
    assert!(is_node_addr(
        "[::ffff:127.0.0.1]:7001".parse().unwrap(),
        src
    ));
    assert!(is_node_addr(
        src,
        "[::ffff:127.0.0.1]:7001".parse().unwrap()
    ));
    assert!(!is_node_addr(src, "127.0.0.1:7002".parse().unwrap()));
    assert!(!is_node_addr(src, "127.0.0.2:7001".parse().unwrap()));
    assert!(!is_node_addr("[::1]:7001".parse().unwrap(), src));
}

#[test]
fn relay_net_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<RelayNet>();
    check::<Faults>();
    check::<RelayError>();
}
