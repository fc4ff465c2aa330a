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
        out.extend(error_fields(&self.errors));
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

/// The error fields every mode reports: `errors`, kind → count, and
/// `error_count`, their sum.
pub fn error_fields(errors: &BTreeMap<String, u64>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("errors".into(), json!(errors));
    out.insert("error_count".into(), json!(errors.values().sum::<u64>()));
    out
}

/// The report's errors as `kind ×count` items, most frequent first; empty
/// when there were none.
pub fn error_kinds(report: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Object(errors)) = report.get("errors") else {
        return Vec::new();
    };
    let mut kinds: Vec<(&String, u64)> = errors
        .iter()
        .map(|(kind, count)| (kind, count.as_u64().unwrap_or(0)))
        .filter(|(_, count)| *count > 0)
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    kinds
        .into_iter()
        .map(|(kind, count)| format!("{kind} ×{count}"))
        .collect()
}

/// Prints the report: the JSON object alone, or a readable rendering.
pub fn print(report: &Map<String, Value>, as_json: bool) {
    if as_json {
        println!("{}", Value::Object(report.clone()));
        return;
    }
    print!("{}", render(report));
}

/// The readable rendering: one `key value` line per field, nested objects
/// indented, errors as `kind ×count` lines.
fn render(report: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (key, value) in report {
        match value {
            Value::Object(_) if key == "errors" => {
                let kinds = error_kinds(report);
                if kinds.is_empty() {
                    out.push_str(&format!("{key:<26} none\n"));
                } else {
                    out.push_str(&format!("{key}:\n"));
                    for kind in kinds {
                        out.push_str(&format!("  {kind}\n"));
                    }
                }
            }
            Value::Object(inner) => {
                out.push_str(&format!("{key}:\n"));
                for (name, figure) in inner {
                    out.push_str(&format!("  {name:<28} {figure}\n"));
                }
            }
            other => out.push_str(&format!("{key:<26} {other}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with_errors(errors: &[(&str, u64)]) -> Map<String, Value> {
        let errors: BTreeMap<String, u64> =
            errors.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        error_fields(&errors)
    }

    #[test]
    fn errors_are_an_object_of_kinds_with_their_count() {
        let report = report_with_errors(&[
            ("scan: rejected with code 8", 241),
            ("create: Unavailable", 2),
        ]);
        assert_eq!(report["errors"]["scan: rejected with code 8"], 241);
        assert_eq!(report["error_count"], 243);
    }

    #[test]
    fn error_kinds_list_the_most_frequent_first() {
        let report = report_with_errors(&[
            ("create: Unavailable", 2),
            ("scan: rejected with code 8", 241),
        ]);
        assert_eq!(
            error_kinds(&report),
            ["scan: rejected with code 8 ×241", "create: Unavailable ×2"]
        );
    }

    #[test]
    fn the_text_report_prints_each_error_kind() {
        let report = report_with_errors(&[("scan: rejected with code 8", 241)]);
        let text = render(&report);
        assert!(
            text.contains("  scan: rejected with code 8 ×241\n"),
            "{text}"
        );
        assert!(text.contains("error_count"), "{text}");
    }

    #[test]
    fn a_clean_run_reports_no_errors() {
        let report = report_with_errors(&[]);
        assert!(error_kinds(&report).is_empty());
        assert_eq!(report["error_count"], 0);
        assert!(render(&report).contains("none"));
    }

    #[test]
    fn recorded_errors_reach_the_fields() {
        let Ok(mut recorder) = Recorder::new(&["create"]) else {
            panic!("recorder");
        };
        recorder.error("scan: rejected with code 8");
        recorder.error("scan: rejected with code 8");
        let fields = recorder.fields(1.0);
        assert_eq!(fields["error_count"], 2);
        assert_eq!(fields["errors"]["scan: rejected with code 8"], 2);
    }
}
