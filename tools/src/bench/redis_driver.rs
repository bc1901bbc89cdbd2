//! The Redis driver: GET and SET on the primary, over a pool of connections that each
//! carry one request at a time (as `redis-benchmark`'s clients do).
//!
//! Redis replicates asynchronously: SET returns once the primary has applied it. To ask for
//! the replication acknowledgement a quorum write has in Chorus, `--w` counts copies of the
//! primary and its online replicas, and each SET is followed (in the same round trip) by
//! `WAIT <copies - 1> <timeout>`, which returns once that many replicas acknowledged the
//! write. With 2 replicas, `--w quorum` (2 of 3 copies) is `WAIT 1`, `--w all` is `WAIT 2`
//! and `--w one` is a bare SET. A WAIT that times out short counts as an error. Reads always
//! go to the primary, so `--r` does not apply.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::driver::{Driver, DriverError, Pool, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::{key_name, BenchArgs};

/// WAIT's own timeout: shorter than the request timeout, so a slow replica shows up as a
/// short acknowledgement count rather than a client timeout.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisDriver {
    pool: Pool<MultiplexedConnection>,
    /// Replicas that must acknowledge each write (0: no WAIT).
    acks: usize,
    /// Online replicas when the bench started.
    replicas: usize,
}

/// What `INFO replication` says about the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Replication {
    pub role: String,
    /// Replicas whose state is `online`.
    pub online: usize,
}

/// Parses `INFO replication`: `role:master` and one `slaveK:ip=…,port=…,state=online,…`
/// line per replica.
pub fn parse_replication(info: &str) -> Replication {
    let mut role = String::new();
    let mut online = 0;
    for line in info.lines() {
        let line = line.trim();
        if let Some(r) = line.strip_prefix("role:") {
            role = r.to_string();
        } else if let Some((name, fields)) = line.split_once(':') {
            let is_replica = name
                .strip_prefix("slave")
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            if is_replica && fields.split(',').any(|f| f == "state=online") {
                online += 1;
            }
        }
    }
    Replication { role, online }
}

impl RedisDriver {
    pub async fn connect(args: &BenchArgs) -> Result<RedisDriver, DriverError> {
        let endpoint = args
            .endpoints
            .first()
            .ok_or_else(|| DriverError::Setup("--driver redis needs --endpoints".into()))?;
        let client = redis::Client::open(format!("redis://{endpoint}/"))?;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(REQUEST_TIMEOUT));
        let n = args.connection_count();
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let conn = client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
                .map_err(|e| DriverError::Setup(format!("redis at {endpoint}: {e}")))?;
            conns.push(conn);
        }
        let info: String = match conns.first_mut() {
            Some(c) => redis::cmd("INFO").arg("replication").query_async(c).await?,
            None => return Err(DriverError::Setup("no redis connection".into())),
        };
        let repl = parse_replication(&info);
        if repl.role != "master" {
            return Err(DriverError::Setup(format!(
                "redis at {endpoint} has role {:?}: give the primary's address",
                repl.role
            )));
        }
        let copies = repl.online + 1;
        let needed = args.w.resolve(copies).map_err(|e| {
            DriverError::Setup(format!(
                "--w {}: {e} (the primary and its {} online replicas)",
                args.w, repl.online
            ))
        })?;
        Ok(RedisDriver {
            pool: Pool::new(conns),
            acks: needed - 1,
            replicas: repl.online,
        })
    }
}

impl Driver for RedisDriver {
    async fn read(&self, key: u64) -> Result<bool, DriverError> {
        let mut conn = self.pool.get().await?;
        let value: Option<Bytes> = redis::cmd("GET")
            .arg(key_name(key))
            .query_async(&mut *conn)
            .await?;
        Ok(value.is_some())
    }

    async fn write(&self, key: u64, value: Bytes) -> Result<(), DriverError> {
        let mut conn = self.pool.get().await?;
        if self.acks == 0 {
            let () = redis::cmd("SET")
                .arg(key_name(key))
                .arg(&value[..])
                .query_async(&mut *conn)
                .await?;
            return Ok(());
        }
        let (acked,): (i64,) = redis::pipe()
            .cmd("SET")
            .arg(key_name(key))
            .arg(&value[..])
            .ignore()
            .cmd("WAIT")
            .arg(self.acks)
            .arg(WAIT_TIMEOUT.as_millis() as u64)
            .query_async(&mut *conn)
            .await?;
        if acked < self.acks as i64 {
            return Err(DriverError::NotReplicated {
                acked,
                wanted: self.acks,
                timeout: WAIT_TIMEOUT,
            });
        }
        Ok(())
    }

    fn read_level(&self) -> String {
        "primary".into()
    }

    fn write_level(&self) -> String {
        if self.acks == 0 {
            "primary (no WAIT)".into()
        } else {
            format!("WAIT {} of {} replicas", self.acks, self.replicas)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_online_replicas() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=31401,state=online,offset=42,lag=0\r\n\
            slave1:ip=127.0.0.1,port=31402,state=online,offset=42,lag=1\r\n\
            slave2:ip=127.0.0.1,port=31403,state=wait_bgsave,offset=0,lag=0\r\n\
            master_failover_state:no-failover\r\nmaster_repl_offset:42\r\n";
        assert_eq!(
            parse_replication(info),
            Replication {
                role: "master".into(),
                online: 2
            }
        );
    }

    #[test]
    fn a_replica_reports_its_role() {
        let info = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
            master_port:31400\r\nmaster_link_status:up\r\nslave_read_only:1\r\n";
        let r = parse_replication(info);
        assert_eq!(r.role, "slave");
        assert_eq!(r.online, 0);
    }
}
