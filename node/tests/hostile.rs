//! Hostile input from the network: garbage datagrams, malformed frames, strangers without a
//! certificate from the cluster CA, clients knocking on the peer protocol. The node must
//! refuse each clearly and keep serving everyone else.

mod common;

use chorus_client::proto::{ErrorKind, Request, Response, ALPN_CLIENT, ALPN_PEER};
use chorus_client::{tls, wire, Level};
use common::{addr, endpoint, exchange, quic_config, TestCluster};

async fn still_serves(c: &TestCluster) {
    let client = c.client().await;
    client
        .put("h", "alive", b"yes".to_vec(), None, Level::All)
        .await
        .expect("cluster still takes W=all writes");
    let r = client.get("h", "alive", Level::All).await.expect("R=all");
    assert!(r.found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_and_malformed_frames_leave_the_node_serving() {
    let c = TestCluster::start(3, &[]).await;

    // Garbage datagrams of every size at every node.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for k in 1..=3 {
        for len in [0usize, 1, 7, 20, 100, 1200, 1500, 9000] {
            let mut buf = vec![0u8; len];
            for b in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            // A QUIC long header with nonsense after it, too.
            if len > 4 {
                buf[0] = 0xc0;
            }
            let _ = sock.send_to(&buf, addr(&c, k));
        }
    }

    // Malformed frames on a properly authenticated client connection.
    let ep = endpoint();
    let conn = ep
        .connect_with(
            quic_config(&c, Some(("client.pem", "client.key")), ALPN_CLIENT),
            addr(&c, 1),
            tls::NODE_NAME,
        )
        .expect("connect")
        .await
        .expect("handshake");

    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xc1, 0xff, 0x00, 0x13, 0x37]);
    let r = exchange(&conn, &garbage)
        .await
        .expect("an answer to garbage");
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::BadRequest),
        "{r:?}"
    );

    let huge = (1u32 << 31).to_be_bytes();
    let r = exchange(&conn, &huge)
        .await
        .expect("an answer to a huge length");
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::TooLarge),
        "{r:?}"
    );

    let truncated = [0u8, 0, 0, 100, 1, 2, 3];
    let r = exchange(&conn, &truncated)
        .await
        .expect("an answer to a truncated frame");
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::BadRequest),
        "{r:?}"
    );

    // The same connection still serves a proper request.
    let ok = wire::encode(&Request::Status, 1).expect("encode");
    let r = exchange(&conn, &ok).await.expect("status after garbage");
    assert!(matches!(r, Response::Status(_)), "{r:?}");

    still_serves(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_clients_posing_as_peers_are_refused() {
    let c = TestCluster::start(3, &[]).await;
    let ep = endpoint();

    // No client certificate at all.
    let no_cert = ep
        .connect_with(
            quic_config(&c, None, ALPN_CLIENT),
            addr(&c, 1),
            tls::NODE_NAME,
        )
        .expect("connect");
    let refused = match no_cert.await {
        Err(_) => true,
        // TLS 1.3 may finish the client side before the server checks; the first
        // request then fails.
        Ok(conn) => exchange(&conn, &wire::encode(&Request::Status, 0).expect("encode"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate from another CA.
    let other = std::env::temp_dir().join(format!("chorus-other-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&other);
    chorus_node::layout::create(&other, 1, "127.0.0.1", 1).expect("other layout");
    let roots = tls::roots(&c.dir.join("ca.pem")).expect("roots");
    let crypto = tls::client_crypto(
        roots,
        tls::load_certs(&other.join("client.pem")).expect("cert"),
        tls::load_key(&other.join("client.key")).expect("key"),
        ALPN_CLIENT,
    )
    .expect("crypto");
    let foreign = ep
        .connect_with(
            tls::quinn_client(crypto).expect("quinn"),
            addr(&c, 1),
            tls::NODE_NAME,
        )
        .expect("connect");
    let refused = match foreign.await {
        Err(_) => true,
        Ok(conn) => exchange(&conn, &wire::encode(&Request::Status, 0).expect("encode"))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA was served");
    let _ = std::fs::remove_dir_all(&other);

    // A genuine client certificate on the peer protocol.
    let posing = ep
        .connect_with(
            quic_config(&c, Some(("client.pem", "client.key")), ALPN_PEER),
            addr(&c, 1),
            tls::NODE_NAME,
        )
        .expect("connect");
    let refused = match posing.await {
        Err(_) => true,
        Ok(conn) => {
            let ping = ping_from_n2(&c);
            exchange(&conn, &wire::encode(&ping, 0).expect("encode"))
                .await
                .is_err()
        }
    };
    assert!(
        refused,
        "a client certificate was let onto the peer protocol"
    );

    // Negative control: a node certificate on the peer protocol is accepted.
    let node = ep
        .connect_with(
            quic_config(&c, Some(("n2/node.pem", "n2/node.key")), ALPN_PEER),
            addr(&c, 1),
            &tls::node_name("n1"),
        )
        .expect("connect")
        .await
        .expect("node handshake");
    let (mut send, mut recv) = node.open_bi().await.expect("stream");
    let ping = ping_from_n2(&c);
    send.write_all(&wire::encode(&ping, 0).expect("encode"))
        .await
        .expect("send");
    let _ = send.finish();
    let (pong, _): (chorus_node::rpc::PeerResponse, u64) =
        wire::read_frame(&mut recv, 1 << 20).await.expect("pong");
    assert!(
        matches!(pong, chorus_node::rpc::PeerResponse::Pong { .. }),
        "{pong:?}"
    );

    still_serves(&c).await;
}

/// A ping as n2 sends it: with its cluster's id and settings.
fn ping_from_n2(c: &TestCluster) -> chorus_node::rpc::PeerRequest {
    let cfg = chorus_node::config::NodeConfig::load(&c.node_dir(2).join("node.toml"), &[])
        .expect("n2 config");
    chorus_node::rpc::PeerRequest::Ping {
        from: "n2".into(),
        cluster: cfg.cluster.id.clone(),
        settings: chorus_node::identity::settings(&cfg),
    }
}

#[test]
fn bad_config_names_the_field() {
    let dir = std::env::temp_dir().join(format!("chorus-badcfg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    chorus_node::layout::create(&dir, 1, "127.0.0.1", 1).expect("layout");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["server", "--config"])
        .arg(dir.join("n1/node.toml"))
        .args(["--set", "storage.sync=maybe"])
        .output()
        .expect("run chorus");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("storage.sync"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}
