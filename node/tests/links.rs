//! Batched links: many tagged requests on one long-lived stream, answered by id in any
//! order; a link that breaks its framing is closed alone; the per-request stream protocol
//! still works, with links switched off on either side.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chorus_client::link::read_link_header;
use chorus_client::proto::wire::LINK_MAGIC;
use chorus_client::proto::{Request, Response, ALPN_CLIENT};
use chorus_client::wire::{self, Encoded};
use chorus_client::{tls, Client, Level};
use common::{addr, endpoint, exchange, quic_config, TestCluster};

async fn client_conn(c: &TestCluster, k: usize) -> quinn::Connection {
    endpoint()
        .connect_with(
            quic_config(c, Some(("client.pem", "client.key")), ALPN_CLIENT),
            addr(c, k),
            tls::NODE_NAME,
        )
        .expect("connect")
        .await
        .expect("handshake")
}

/// Reads one answer from a link: its id and message.
async fn read_answer(recv: &mut quinn::RecvStream) -> (u64, Response) {
    let (id, size) = tokio::time::timeout(
        Duration::from_secs(10),
        read_link_header(recv, wire::DEFAULT_MAX_FRAME),
    )
    .await
    .expect("an answer within 10 s")
    .expect("a well-formed header")
    .expect("the link is open");
    let mut body = vec![0u8; size];
    recv.read_exact(&mut body).await.expect("body");
    let (msg, _) = wire::decode::<Response>(&body).expect("decode");
    (id, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_carries_many_requests_in_one_write_and_answers_each_by_id() {
    let c = TestCluster::start(3, &[]).await;
    let conn = client_conn(&c, 1).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");

    // The magic, then 40 puts and 10 status requests, all in one write.
    let mut batch = LINK_MAGIC.to_be_bytes().to_vec();
    for i in 0..40u64 {
        let put = Request::Put {
            bucket: b"l".to_vec(),
            key: format!("k{i}").into_bytes(),
            value: format!("v{i}").into_bytes(),
            context: Vec::new(),
            w: Level::All,
            sloppy: false,
            ttl_ms: None,
        };
        batch.extend(
            Encoded::new(&put, i)
                .expect("encode")
                .into_link_frame(1000 + i),
        );
    }
    for i in 0..10u64 {
        let status = Encoded::new(&Request::Status, 0).expect("encode");
        batch.extend(status.into_link_frame(5000 + i));
    }
    send.write_all(&batch).await.expect("write");

    let mut ids = HashSet::new();
    for _ in 0..50 {
        let (id, msg) = read_answer(&mut recv).await;
        match id {
            1000..1040 => assert!(matches!(msg, Response::Written { .. }), "{id}: {msg:?}"),
            5000..5010 => assert!(matches!(msg, Response::Status(_)), "{id}: {msg:?}"),
            _ => panic!("an answer to no request: {id}"),
        }
        assert!(ids.insert(id), "answered twice: {id}");
    }

    // What the link wrote is what a client reads.
    let client = c.client().await;
    for i in 0..40 {
        let r = client
            .get("l", format!("k{i}"), Level::All)
            .await
            .expect("get");
        assert_eq!(r.values, vec![format!("v{i}").into_bytes()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_with_broken_framing_is_closed_and_the_connection_still_serves() {
    let c = TestCluster::start(3, &[]).await;
    let conn = client_conn(&c, 1).await;

    // A frame too short to hold its id, then one over the frame limit.
    for header in [
        3u32.to_be_bytes().to_vec(),
        (1u32 << 31).to_be_bytes().to_vec(),
    ] {
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let mut bytes = LINK_MAGIC.to_be_bytes().to_vec();
        bytes.extend(header);
        bytes.extend([0u8; 16]);
        send.write_all(&bytes).await.expect("write");
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 64];
            loop {
                match recv.read(&mut buf).await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the node closes a link that broke its framing");
    }

    // A good link on the same connection, and a stream per request, both still work.
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let mut bytes = LINK_MAGIC.to_be_bytes().to_vec();
    bytes.extend(
        Encoded::new(&Request::Status, 0)
            .expect("encode")
            .into_link_frame(7),
    );
    send.write_all(&bytes).await.expect("write");
    let (id, msg) = read_answer(&mut recv).await;
    assert_eq!(id, 7);
    assert!(matches!(msg, Response::Status(_)), "{msg:?}");
    let ok = wire::encode(&Request::Status, 1).expect("encode");
    let r = exchange(&conn, &ok).await.expect("a stream exchange");
    assert!(matches!(r, Response::Status(_)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_switched_off_on_nodes_and_client_still_serve_every_request() {
    let c = TestCluster::start(3, &["runtime.links=false"]).await;
    let mut cfg = c.client_config();
    cfg.links = false;
    let client = Client::connect(cfg).await.expect("connect");
    for i in 0..20 {
        client
            .put("o", format!("k{i}"), b"v".to_vec(), None, Level::All)
            .await
            .expect("W=all without links");
    }
    // A client with links talks to the same nodes.
    let linked = c.client().await;
    for i in 0..20 {
        let r = linked
            .get("o", format!("k{i}"), Level::All)
            .await
            .expect("R=all");
        assert_eq!(r.values, vec![b"v".to_vec()]);
    }
}
