//! Reading `node.toml`: `--set key=value` overrides, relative paths, and validation whose
//! errors name the field.

use std::path::Path;

use super::{check_cluster_id, check_id, ConfigError, NodeConfig};

impl NodeConfig {
    /// Reads `path`, applies `--set` overrides, resolves relative paths against the config's
    /// folder and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<NodeConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut cfg = Self::parse(&text, overrides, &shown)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.data_dir,
            &mut cfg.tls.ca,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(
        text: &str,
        overrides: &[String],
        origin: &str,
    ) -> Result<NodeConfig, ConfigError> {
        let field_err = |field: &str, reason: String| ConfigError::Field {
            path: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| field_err("(syntax)", e.message().to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: NodeConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let field = e.path().to_string();
                field_err(&field, e.into_inner().to_string())
            })?;
        cfg.validate().map_err(|(f, r)| field_err(&f, r))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, r: String| Err((f.to_string(), r));
        if let Err(r) = check_id(&self.id) {
            return err("id", r);
        }
        let c = &self.cluster;
        if let Err(r) = check_cluster_id(&c.id) {
            return err("cluster.id", r);
        }
        if c.partitions == 0 || !c.partitions.is_power_of_two() || c.partitions > 65536 {
            return err(
                "cluster.partitions",
                format!("{} is not a power of two from 1 to 65536", c.partitions),
            );
        }
        let chance = self.read_repair.chance;
        if !(0.0..=1.0).contains(&chance) {
            return err(
                "read_repair.chance",
                format!("{chance} is not from 0.0 to 1.0"),
            );
        }
        if c.n == 0 || c.n > 16 {
            return err("cluster.n", format!("{} is not from 1 to 16", c.n));
        }
        for (name, b) in &c.buckets {
            if let Some(n) = b.n.filter(|n| *n == 0 || *n > 16) {
                return err(
                    &format!("cluster.buckets.{name}.n"),
                    format!("{n} is not from 1 to 16"),
                );
            }
            if let Some(ttl) = b.ttl {
                if let Err(why) = chorus_client::proto::check_ttl(ttl) {
                    return err(&format!("cluster.buckets.{name}.ttl"), why);
                }
            }
        }
        if c.secret.is_none() {
            return err(
                "cluster.secret",
                "missing: every node of a cluster needs the same secret of 64 hex digits; generate one with `openssl rand -hex 32`".into(),
            );
        }
        if c.members.is_empty() && c.seeds.is_empty() {
            return err(
                "cluster.members",
                "list the members of a new cluster, or cluster.seeds to join one".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in c.members.iter().enumerate() {
            if let Err(r) = check_id(&m.id) {
                return err(&format!("cluster.members[{i}].id"), r);
            }
            if !seen.insert(&m.id) {
                return err(
                    &format!("cluster.members[{i}].id"),
                    format!("duplicate member {:?}", m.id),
                );
            }
        }
        if !c.members.is_empty() && !seen.contains(&self.id) {
            return err(
                "cluster.members",
                format!("this node ({}) is not among the members", self.id),
            );
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_key_bytes", l.max_key_bytes),
            ("limits.max_bucket_bytes", l.max_bucket_bytes),
            ("limits.max_value_bytes", l.max_value_bytes),
            ("limits.max_inflight_requests", l.max_inflight_requests),
            ("limits.max_connections", l.max_connections),
            ("limits.max_siblings", l.max_siblings),
            ("storage.max_batch", self.storage.max_batch),
            ("hinted_handoff.batch", self.hinted_handoff.batch),
            ("anti_entropy.batch", self.anti_entropy.batch),
            ("transfers.batch", self.transfers.batch),
        ] {
            if v == 0 {
                return err(name, "must be greater than 0".into());
            }
        }
        if l.max_bucket_bytes > u16::MAX as usize {
            return err("limits.max_bucket_bytes", "must be at most 65535".into());
        }
        if l.max_streams_per_connection == 0 {
            return err(
                "limits.max_streams_per_connection",
                "must be greater than 0".into(),
            );
        }
        if let Err((field, reason)) = crate::budget::validate(l) {
            return err(field, reason);
        }
        let needed = l.max_key_bytes + l.max_value_bytes + l.max_bucket_bytes + 4096;
        if l.max_frame_bytes < needed {
            return err(
                "limits.max_frame_bytes",
                format!(
                    "{} is too small to carry a maximal request ({needed} bytes)",
                    l.max_frame_bytes
                ),
            );
        }
        if let Some(b) = l.max_batch_bytes {
            if b == 0 || b > l.max_frame_bytes / 2 {
                return err(
                    "limits.max_batch_bytes",
                    format!(
                        "{b} must be from 1 to half of limits.max_frame_bytes ({})",
                        l.max_frame_bytes / 2
                    ),
                );
            }
        }
        if let Some(o) = l.max_object_bytes {
            let most = l.max_frame_bytes.saturating_sub(l.frame_headroom());
            if o < l.max_value_bytes || o > most {
                return err(
                    "limits.max_object_bytes",
                    format!(
                        "{o} must be at least limits.max_value_bytes ({}) and at most {most} \
                         (limits.max_frame_bytes less room for the key and context)",
                        l.max_value_bytes
                    ),
                );
            }
        }
        for (name, d) in [
            ("timeouts.request", self.timeouts.request),
            ("timeouts.connect", self.timeouts.connect),
            ("failure_detector.interval", self.failure_detector.interval),
            (
                "failure_detector.down_after",
                self.failure_detector.down_after,
            ),
        ] {
            if d.is_zero() {
                return err(name, "must be longer than 0".into());
            }
        }
        // A hint older than the delete it could resurrect must expire before the purge.
        if self.tombstones.grace <= self.hinted_handoff.expiry {
            return err(
                "tombstones.grace",
                format!(
                    "{} must be longer than hinted_handoff.expiry ({}), or a hint written before a delete could bring the key back after the tombstone is purged",
                    humantime::format_duration(self.tombstones.grace),
                    humantime::format_duration(self.hinted_handoff.expiry)
                ),
            );
        }
        Ok(())
    }
}

/// Applies one `a.b.c=value`. The value is read as TOML when it parses (numbers, booleans,
/// quoted strings, arrays), otherwise as a bare string.
fn apply_override(table: &mut toml::Table, o: &str) -> Result<(), ConfigError> {
    let (key, raw) = o
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(o.to_string()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(ConfigError::BadOverride(o.to_string()));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::BadOverride(format!("{o}: {p} is not a table"))),
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
