//! The batch commands of the command line: `get-many` and `put-many`, and how their values
//! and contexts look in JSON (as in `get --json`: values as UTF-8 text, contexts in the
//! base64 form `--context` takes).

use std::io::BufRead;

use anyhow::{Context as _, Result};
use chorus_client::{CausalContext, Client, KeyGet, KeyPut, Level, WriteEntry};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

/// `chorus get-many`.
#[derive(Args)]
pub struct GetManyArgs {
    /// The keys to read, in the order the results are printed.
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
    #[arg(long, default_value = "default")]
    bucket: String,
    /// Read consistency per key: one, quorum, all or a number.
    #[arg(long, default_value = "quorum")]
    r: Level,
    /// Print one JSON object: `{"results":[{"key","found","values","context",...}]}`.
    #[arg(long)]
    json: bool,
}

/// `chorus put-many`.
#[derive(Args)]
pub struct PutManyArgs {
    #[arg(long, default_value = "default")]
    bucket: String,
    /// Write consistency per key: one, quorum, all or a number.
    #[arg(long, default_value = "quorum")]
    w: Level,
    /// Expire the written values after this long, e.g. `90s` or `1h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<std::time::Duration>,
    /// Print one JSON object: `{"results":[{"key","ok","error",...}]}`.
    #[arg(long)]
    json: bool,
}

/// One line of `put-many`'s input. A `null` (or absent) value deletes the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    context: Option<String>,
}

/// Reads the keys and prints one result each; exits 0 once the batch was answered, even
/// if some keys failed (each says why).
pub async fn get_many(args: GetManyArgs, client: Client) -> Result<()> {
    let results = client.get_many(&args.bucket, &args.keys, args.r).await?;
    if args.json {
        let out: Vec<Value> = results.iter().map(get_json).collect();
        println!("{}", json!({ "results": out }));
        return Ok(());
    }
    for r in &results {
        let key = String::from_utf8_lossy(&r.key);
        match &r.result {
            Ok(g) if g.found => {
                for v in &g.values {
                    println!("{key}\t{}", String::from_utf8_lossy(v));
                }
            }
            Ok(_) => println!("{key}\t(not found)"),
            Err(e) => println!("{key}\t(error: {e})"),
        }
    }
    Ok(())
}

fn get_json(r: &KeyGet) -> Value {
    let key = String::from_utf8_lossy(&r.key);
    match &r.result {
        Ok(g) => {
            let values: Vec<String> = g
                .values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            json!({
                "key": key,
                "found": g.found,
                "values": values,
                "context": g.context.to_string(),
                "siblings": g.values.len(),
                "truncated": g.truncated,
                "error": null,
            })
        }
        Err(e) => json!({
            "key": key,
            "found": false,
            "values": [],
            "context": null,
            "error": e.to_string(),
        }),
    }
}

/// A `--ttl` value: a humantime duration (`90s`, `1h`) within the TTL limits.
pub(crate) fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))?;
    chorus_client::proto::check_ttl(ttl)?;
    Ok(ttl)
}

/// Reads JSON lines from standard input, writes them as one batch and prints one outcome
/// per line; exits 0 once the batch was answered, even if some keys failed.
pub async fn put_many(
    args: PutManyArgs,
    client: impl std::future::Future<Output = Result<Client>>,
) -> Result<()> {
    let mut items = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        let input: InputLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {}: expected {{\"key\":..., \"value\":..., \"context\":...}}",
                n + 1
            )
        })?;
        let context = match input.context.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<CausalContext>()
                    .with_context(|| format!("line {}: bad context", n + 1))?,
            ),
        };
        items.push(WriteEntry {
            key: input.key.into_bytes(),
            value: input.value.map(String::into_bytes),
            context,
        });
    }
    let client = client.await?;
    let results = client
        .put_many_with(&args.bucket, items, args.w, args.ttl)
        .await?;
    if args.json {
        let out: Vec<Value> = results.iter().map(put_json).collect();
        println!("{}", json!({ "results": out }));
        return Ok(());
    }
    for r in &results {
        let key = String::from_utf8_lossy(&r.key);
        match &r.result {
            Ok(_) => println!("{key}\tok"),
            Err(e) => println!("{key}\terror: {e}"),
        }
    }
    Ok(())
}

fn put_json(r: &KeyPut) -> Value {
    let key = String::from_utf8_lossy(&r.key);
    match &r.result {
        Ok(c) => json!({"key": key, "ok": true, "error": null, "context": c.to_string()}),
        Err(e) => json!({"key": key, "ok": false, "error": e.to_string(), "context": null}),
    }
}
