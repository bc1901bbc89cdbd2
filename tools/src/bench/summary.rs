//! The run's report: the `--json` summary, which carries the histograms themselves so that
//! the reports of several generator processes can be read back and merged into one, and the
//! text report made from the same summary.
//!
//! A histogram is written as `[[value, count], ...]`, one pair per non-empty bucket, the
//! value being the highest one the bucket stands for. Recording each pair back into a
//! histogram of the same bounds fills the same buckets, so nothing is lost in the round
//! trip, and any tool can add the lists up.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::args::{BenchArgs, DriverKind};
use super::stats::{histogram, Measured};

/// Setup fields that must agree for reports to be merged.
const SAME: [&str; 7] = [
    "workload",
    "records",
    "mode",
    "r",
    "w",
    "value_size",
    "driver",
];
/// Setup fields that add up over processes running at the same time.
const SUMMED: [&str; 3] = ["concurrency", "rate", "connections"];

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("not a bench --json report: {0}")]
    Shape(String),
    #[error("the reports are of different runs: {field} is {a} in one and {b} in another")]
    Mismatch { field: String, a: Value, b: Value },
    #[error("histogram {name}: {why}")]
    Histogram { name: String, why: String },
    #[error("nothing to merge")]
    Empty,
}

/// One run's report, from one generator process or merged from several.
#[derive(Clone, Debug)]
pub(super) struct Summary {
    /// What was run: workload, records, mode, concurrency, rate, r, w, value_size, and for
    /// the comparison drivers driver, endpoints and connections.
    setup: Map<String, Value>,
    measured: Measured,
    seconds: f64,
    ops_per_sec: f64,
    /// Generator processes this report stands for.
    processes: u64,
}

impl Summary {
    /// The report of a run that took `elapsed`.
    pub(super) fn of_run(
        args: &BenchArgs,
        (r, w): (String, String),
        measured: Measured,
        elapsed: Duration,
    ) -> Summary {
        let open = args.rate.is_some();
        let mut setup = Map::new();
        setup.insert("workload".into(), json!(args.workload));
        setup.insert("records".into(), json!(args.records));
        setup.insert("mode".into(), json!(if open { "open" } else { "closed" }));
        let concurrency = if open {
            Value::Null
        } else {
            json!(args.concurrency)
        };
        setup.insert("concurrency".into(), concurrency);
        setup.insert("rate".into(), json!(args.rate));
        setup.insert("r".into(), json!(r));
        setup.insert("w".into(), json!(w));
        setup.insert("value_size".into(), json!(args.value_size));
        // The Chorus summary keeps its original fields; the comparison drivers say what
        // they ran against.
        if args.driver != DriverKind::Chorus {
            setup.insert("driver".into(), json!(args.driver.name()));
            setup.insert("endpoints".into(), json!(args.endpoints));
            setup.insert("connections".into(), json!(args.connection_count()));
        }
        let seconds = elapsed.as_secs_f64();
        Summary {
            ops_per_sec: measured.ops() as f64 / seconds.max(1e-9),
            setup,
            measured,
            seconds,
            processes: 1,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let m = &self.measured;
        let mut out = self.setup.clone();
        let latency = m.latency().map(|h| percentiles(&h)).unwrap_or(json!({}));
        let per_op: Map<String, Value> = m
            .per_op
            .iter()
            .map(|(op, h)| {
                (
                    op.clone(),
                    json!({"count": h.len(), "latency_us": percentiles(h)}),
                )
            })
            .collect();
        let send_lag = m.send_lag.as_ref().map(|h| {
            json!({"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99), "max": h.max()})
        });
        let hists: Map<String, Value> = m
            .per_op
            .iter()
            .map(|(op, h)| (op.clone(), encode(h)))
            .collect();
        out.insert("ops".into(), json!(m.ops()));
        out.insert("seconds".into(), json!(self.seconds));
        out.insert("ops_per_sec".into(), json!(self.ops_per_sec));
        out.insert("errors".into(), json!(m.errors()));
        out.insert("errors_by_kind".into(), json!(m.errors_by_kind));
        out.insert("error_samples".into(), json!(m.error_samples));
        out.insert("latency_us".into(), latency);
        out.insert("per_op".into(), Value::Object(per_op));
        out.insert("send_lag_us".into(), json!(send_lag));
        out.insert("processes".into(), json!(self.processes));
        out.insert(
            "histograms".into(),
            json!({"per_op": hists, "send_lag": m.send_lag.as_ref().map(encode)}),
        );
        if self.setup.contains_key("driver") {
            out.insert("not_found".into(), json!(m.not_found));
        }
        Value::Object(out)
    }

    /// Reads a report back from its JSON.
    pub(super) fn from_json(v: &Value) -> Result<Summary, SummaryError> {
        let shape = |what: &str| SummaryError::Shape(what.to_string());
        let obj = v.as_object().ok_or_else(|| shape("not a JSON object"))?;
        let num = |k: &str| obj.get(k).and_then(Value::as_f64).ok_or_else(|| shape(k));
        let hists = obj
            .get("histograms")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("no histograms (written by an older chorus bench?)"))?;
        let mut per_op = BTreeMap::new();
        for (op, h) in hists
            .get("per_op")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("histograms.per_op"))?
        {
            per_op.insert(op.clone(), decode(op, h)?);
        }
        let send_lag = match hists.get("send_lag") {
            None | Some(Value::Null) => None,
            Some(h) => Some(decode("send_lag", h)?),
        };
        let mut errors_by_kind = BTreeMap::new();
        for (kind, n) in obj
            .get("errors_by_kind")
            .and_then(Value::as_object)
            .ok_or_else(|| shape("errors_by_kind"))?
        {
            errors_by_kind.insert(
                kind.clone(),
                n.as_u64().ok_or_else(|| shape("errors_by_kind"))?,
            );
        }
        let error_samples = obj
            .get("error_samples")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, m)| Some((k.clone(), m.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let mut setup = Map::new();
        for k in SAME.iter().chain(&SUMMED).chain(&["endpoints"]) {
            if let Some(v) = obj.get(*k) {
                setup.insert(k.to_string(), v.clone());
            }
        }
        Ok(Summary {
            setup,
            measured: Measured {
                per_op,
                send_lag,
                errors_by_kind,
                error_samples,
                not_found: obj.get("not_found").and_then(Value::as_u64).unwrap_or(0),
            },
            seconds: num("seconds")?,
            ops_per_sec: num("ops_per_sec")?,
            processes: obj.get("processes").and_then(Value::as_u64).unwrap_or(1),
        })
    }

    /// One report for processes that ran the same workload at the same time: histograms
    /// and counts added, throughput and offered load summed, the longest run's seconds.
    pub(super) fn merge(parts: Vec<Summary>) -> Result<Summary, SummaryError> {
        let mut parts = parts.into_iter();
        let mut out = parts.next().ok_or(SummaryError::Empty)?;
        for p in parts {
            for field in SAME {
                let (a, b) = (out.setup.get(field), p.setup.get(field));
                if a != b {
                    return Err(SummaryError::Mismatch {
                        field: field.to_string(),
                        a: a.cloned().unwrap_or(Value::Null),
                        b: b.cloned().unwrap_or(Value::Null),
                    });
                }
            }
            for field in SUMMED {
                if let (Some(a), Some(b)) = (
                    out.setup.get(field).and_then(Value::as_u64),
                    p.setup.get(field).and_then(Value::as_u64),
                ) {
                    out.setup.insert(field.to_string(), json!(a + b));
                }
            }
            out.measured
                .add(&p.measured)
                .map_err(|e| SummaryError::Histogram {
                    name: "merge".into(),
                    why: e.to_string(),
                })?;
            out.seconds = out.seconds.max(p.seconds);
            out.ops_per_sec += p.ops_per_sec;
            out.processes += p.processes;
        }
        Ok(out)
    }

    /// The human-readable report.
    pub(super) fn text(&self) -> String {
        let out = self.to_json();
        let s = |k: &str| out[k].as_str().unwrap_or_default().to_string();
        let on = match out.get("driver").and_then(Value::as_str) {
            Some(d) => {
                let eps: Vec<&str> = out["endpoints"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!("{d} at {}, ", eps.join(","))
            }
            None => String::new(),
        };
        let mut lines = vec![format!(
            "workload {} ({on}{} records, {} ops, R={} W={}): {:.0} ops/s, {} errors",
            s("workload"),
            out["records"],
            out["ops"],
            s("r"),
            s("w"),
            self.ops_per_sec,
            out["errors"]
        )];
        if self.processes > 1 {
            lines.push(format!(
                "merged from {} generator processes",
                self.processes
            ));
        }
        if self.measured.errors() > 0 {
            let kinds: Vec<String> = self
                .measured
                .errors_by_kind
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            lines.push(format!("errors by kind: {}", kinds.join(", ")));
            for (kind, m) in &self.measured.error_samples {
                lines.push(format!("  first {kind} error: {m}"));
            }
        }
        if self.setup.contains_key("driver") && self.measured.not_found > 0 {
            lines.push(format!("{} reads found no value", self.measured.not_found));
        }
        if let Some(lag) = out["send_lag_us"].as_object() {
            lines.push(format!(
                "send lag (us, generator's own): p50 {} p99 {} max {}",
                lag["p50"], lag["p99"], lag["max"]
            ));
        }
        lines.push(format!("latency (us): {}", out["latency_us"]));
        if let Some(per_op) = out["per_op"].as_object() {
            for (op, v) in per_op {
                lines.push(format!("  {op}: {v}"));
            }
        }
        lines.join("\n")
    }
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// `[[value, count], ...]` over the non-empty buckets.
pub(super) fn encode(h: &Histogram<u64>) -> Value {
    Value::Array(
        h.iter_recorded()
            .map(|v| json!([v.value_iterated_to(), v.count_at_value()]))
            .collect(),
    )
}

pub(super) fn decode(name: &str, v: &Value) -> Result<Histogram<u64>, SummaryError> {
    let bad = |why: String| SummaryError::Histogram {
        name: name.to_string(),
        why,
    };
    let mut h = histogram().map_err(|e| bad(e.to_string()))?;
    let pairs = v.as_array().ok_or_else(|| bad("not a list".into()))?;
    for p in pairs {
        let (value, count) = match p.as_array().map(Vec::as_slice) {
            Some([v, c]) => (v.as_u64(), c.as_u64()),
            _ => (None, None),
        };
        let (Some(value), Some(count)) = (value, count) else {
            return Err(bad(format!("{p} is not [value, count]")));
        };
        // A bucket's top value can lie a little above `high()`; recording reports a value
        // that truly is out of range.
        h.record_n(value, count)
            .map_err(|_| bad(format!("{value} is out of range")))?;
    }
    Ok(h)
}
