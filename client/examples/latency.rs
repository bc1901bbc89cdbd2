//! Sequential put/get latency against a running cluster, one request at a time.
//!
//! `cargo run --release -p chorus-client --example latency -- cluster/client.toml [COUNT] [LEVEL]`

use std::time::{Duration, Instant};

use chorus_client::{Client, ClientConfig, Level};

fn summary(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let pct = |p: f64| d[((d.len() as f64 - 1.0) * p).round() as usize].as_micros();
    println!(
        "{name:<12} n={:<6} p50={}us p90={}us p99={}us max={}us",
        d.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let cfg = args
        .get(1)
        .ok_or("usage: latency CLIENT_TOML [COUNT] [LEVEL]")?;
    let count: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let level: Level = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(Level::Quorum);
    let client = Client::connect(ClientConfig::load(cfg.as_ref())?).await?;
    let value = vec![b'x'; 1024];
    let (mut puts, mut gets) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let key = format!("latency-{}-{i}", std::process::id());
        let t = Instant::now();
        client
            .put("bench", &key, value.clone(), None, level)
            .await?;
        puts.push(t.elapsed());
    }
    for i in 0..count {
        let key = format!("latency-{}-{i}", std::process::id());
        let t = Instant::now();
        client.get("bench", &key, level).await?;
        gets.push(t.elapsed());
    }
    summary(&format!("put {level}"), puts);
    summary(&format!("get {level}"), gets);
    Ok(())
}
