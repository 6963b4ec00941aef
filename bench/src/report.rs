//! The result of one run: what was measured, against what, on which machine, printed as a table or as one
//! JSON line; and `table`, which lays several runs' JSON lines side by side as markdown.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// The label of the target (e.g. "imcloud standalone", "nats").
    pub target: String,
    /// Version and configuration of the target, as the caller described it.
    pub about: String,
    pub machine: String,
    pub params: Vec<(String, String)>,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn new(scenario: &str, target: &str, about: &str) -> Report {
        Report {
            scenario: scenario.into(),
            target: target.into(),
            about: about.into(),
            machine: machine(),
            params: Vec::new(),
            figures: Vec::new(),
        }
    }

    pub fn param(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.params.push((name.into(), value.to_string()));
        self
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &str) -> &mut Self {
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        });
        self
    }

    pub fn text(&self) -> String {
        let mut out = format!("{} against {}\n", self.scenario, self.target);
        let _ = writeln!(out, "  {:<36}{}", "machine", self.machine);
        if !self.about.is_empty() {
            let _ = writeln!(out, "  {:<36}{}", "target", self.about);
        }
        for (k, v) in &self.params {
            let _ = writeln!(out, "  {k:<36}{v}");
        }
        for f in &self.figures {
            let _ = writeln!(out, "  {:<36}{} {}", f.name, number(f.value), f.unit);
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// "2 cores, 23.4 GiB".
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    format!("{cores} cores, {:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0)
}

/// Markdown: one table per scenario, a column per target, a row per figure (in first-seen order).
pub fn side_by_side(reports: &[Report]) -> String {
    let mut scenarios: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        scenarios.entry(&r.scenario).or_default().push(r);
    }
    let mut out = String::new();
    for (scenario, runs) in scenarios {
        let _ = writeln!(out, "### {scenario}\n");
        let mut rows: Vec<(String, String)> = Vec::new();
        for r in &runs {
            for f in &r.figures {
                if !rows.iter().any(|(n, _)| n == &f.name) {
                    rows.push((f.name.clone(), f.unit.clone()));
                }
            }
        }
        let _ = write!(out, "| |");
        for r in &runs {
            let _ = write!(out, " {} |", r.target);
        }
        let _ = write!(out, "\n|---|");
        for _ in &runs {
            let _ = write!(out, "---:|");
        }
        out.push('\n');
        for (name, unit) in rows {
            let label = if unit.is_empty() {
                name.clone()
            } else {
                format!("{name} ({unit})")
            };
            let _ = write!(out, "| {label} |");
            for r in &runs {
                match r.figures.iter().find(|f| f.name == name) {
                    Some(f) => {
                        let _ = write!(out, " {} |", number(f.value));
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\nParameters:");
        for r in &runs {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "- {}: {} ({})", r.target, params.join(", "), r.about);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_puts_targets_in_columns() {
        let mut a = Report::new("idle", "imcloud", "v1");
        a.param("n", 10)
            .figure("per connection", 3.5, "KiB")
            .figure("rate", 1000.0, "conn/s");
        let mut b = Report::new("idle", "nats", "v2");
        b.param("n", 10).figure("rate", 2000.0, "conn/s");
        let md = side_by_side(&[a, b]);
        assert!(md.contains("| | imcloud | nats |"), "{md}");
        assert!(md.contains("| per connection (KiB) | 3.50 | – |"), "{md}");
        assert!(md.contains("| rate (conn/s) | 1000 | 2000 |"), "{md}");
    }
}
