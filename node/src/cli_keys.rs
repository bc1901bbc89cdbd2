//! The listing commands of the command line: `keys` (a page of a bucket's keys, keys as
//! UTF-8 text as in `get-many`) and `truncate` (admin).

use anyhow::Result;
use chorus_client::Client;
use clap::Args;
use serde_json::json;

/// `chorus keys`.
#[derive(Args)]
pub struct KeysArgs {
    #[arg(long, default_value = "default")]
    bucket: String,
    /// Only keys that start with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Keys in the page at most (default 1,000, at most 10,000).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    limit: u32,
    /// The token the previous page printed: list the keys after it.
    #[arg(long, value_name = "TOKEN")]
    after: Option<String>,
    /// Print one JSON object: `{"keys":[...],"next":TOKEN|null}`.
    #[arg(long)]
    json: bool,
}

/// `chorus truncate`.
#[derive(Args)]
pub struct TruncateArgs {
    #[arg(long)]
    bucket: String,
    /// Print one JSON object: `{"bucket":...,"deleted":N}`.
    #[arg(long)]
    json: bool,
}

/// Prints one page: a key a line, then the token for the next page, if any.
pub async fn keys(args: KeysArgs, client: Client) -> Result<()> {
    let page = client
        .keys(
            &args.bucket,
            &args.prefix,
            args.limit,
            args.after.as_deref(),
        )
        .await?;
    let keys: Vec<String> = page
        .keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    if args.json {
        println!("{}", json!({ "keys": keys, "next": page.next }));
        return Ok(());
    }
    for k in keys {
        println!("{k}");
    }
    if let Some(next) = page.next {
        println!("next: {next}");
    }
    Ok(())
}

pub async fn truncate(args: TruncateArgs, client: Client) -> Result<()> {
    let deleted = client.truncate(&args.bucket).await?;
    if args.json {
        println!("{}", json!({ "bucket": args.bucket, "deleted": deleted }));
    } else {
        println!("bucket {} truncated: {deleted} keys deleted", args.bucket);
    }
    Ok(())
}
