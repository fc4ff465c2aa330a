//! Latency recording (HdrHistogram, microseconds, 3 significant digits) and
//! the final report: one JSON object with `--json`, readable text otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// Highest latency a histogram records (longer ones are clamped).
const MAX_US: u64 = 120_000_000;

/// Latencies of one kind of flow: one histogram per step and one end to end.
#[derive(Clone)]
pub struct Recorder {
    steps: &'static [&'static str],
    hists: Vec<Histogram<u64>>,
    total: Histogram<u64>,
    /// Flows that reached ACCEPTED and were seen by the relying party.
    pub completed: u64,
    errors: BTreeMap<String, u64>,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_US, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Recorder {
    /// An empty recorder for flows made of `steps`.
    pub fn new(steps: &'static [&'static str]) -> anyhow::Result<Self> {
        Ok(Self {
            steps,
            hists: steps
                .iter()
                .map(|_| histogram())
                .collect::<anyhow::Result<_>>()?,
            total: histogram()?,
            completed: 0,
            errors: BTreeMap::new(),
        })
    }

    /// One completed flow: the time of each step and end to end.
    pub fn flow(&mut self, steps: &[Duration], total: Duration) {
        for (hist, step) in self.hists.iter_mut().zip(steps) {
            hist.saturating_record(micros(*step));
        }
        self.total.saturating_record(micros(total));
        self.completed += 1;
    }

    /// One failed flow, by kind.
    pub fn error(&mut self, kind: impl Into<String>) {
        let mut kind: String = kind.into();
        kind.truncate(160);
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Failed flows.
    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            let _ = mine.add(theirs);
        }
        let _ = self.total.add(&other.total);
        self.completed += other.completed;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    fn summary(hist: &Histogram<u64>) -> Value {
        if hist.is_empty() {
            return json!(null);
        }
        json!({
            "p50_ms": ms(hist.value_at_quantile(0.50)),
            "p95_ms": ms(hist.value_at_quantile(0.95)),
            "p99_ms": ms(hist.value_at_quantile(0.99)),
            "max_ms": ms(hist.max()),
            "mean_ms": (hist.mean() / 1000.0 * 1000.0).round() / 1000.0,
        })
    }

    /// The report fields of a load run over `duration_s` measured seconds.
    pub fn fields(&self, duration_s: f64) -> Map<String, Value> {
        let mut out = Map::new();
        let rate = if duration_s > 0.0 {
            self.completed as f64 / duration_s
        } else {
            0.0
        };
        out.insert("flows".into(), json!(self.completed));
        out.insert("flows_per_s".into(), json!((rate * 100.0).round() / 100.0));
        out.insert("errors".into(), json!(self.errors()));
        out.insert("error_kinds".into(), json!(self.errors));
        let (p50, p95, p99) = if self.total.is_empty() {
            (Value::Null, Value::Null, Value::Null)
        } else {
            (
                json!(ms(self.total.value_at_quantile(0.50))),
                json!(ms(self.total.value_at_quantile(0.95))),
                json!(ms(self.total.value_at_quantile(0.99))),
            )
        };
        out.insert("p50_ms".into(), p50);
        out.insert("p95_ms".into(), p95);
        out.insert("p99_ms".into(), p99);
        let mut steps = Map::new();
        for (name, hist) in self.steps.iter().zip(&self.hists) {
            steps.insert((*name).to_owned(), Self::summary(hist));
        }
        steps.insert("end_to_end".into(), Self::summary(&self.total));
        out.insert("steps".into(), Value::Object(steps));
        out.insert(
            "latency_method".into(),
            json!("hdrhistogram, microseconds, 3 significant digits"),
        );
        out
    }
}

/// Prints the report: the JSON object alone, or a readable rendering.
pub fn print(report: &Map<String, Value>, as_json: bool) {
    if as_json {
        println!("{}", Value::Object(report.clone()));
        return;
    }
    for (key, value) in report {
        match value {
            Value::Object(inner) => {
                println!("{key}:");
                for (name, figure) in inner {
                    println!("  {name:<12} {figure}");
                }
            }
            other => println!("{key:<26} {other}"),
        }
    }
}
