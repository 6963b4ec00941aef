//! Latency percentiles: an HDR histogram in microseconds, one per receiving task, merged at the end.

use hdrhistogram::Histogram;

pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // 1 µs .. 10 min, 3 significant digits.
        Latencies(
            Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("static histogram bounds are valid"),
        )
    }

    pub fn record(&mut self, micros: u64) {
        self.0.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than lose the run if it did.
        let _ = self.0.add(&other.0);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_merged_histograms() {
        let (mut a, mut b) = (Latencies::new(), Latencies::new());
        for v in 1..=990 {
            a.record(v * 10);
        }
        for _ in 0..10 {
            b.record(1_000_000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert!((a.ms(0.5) - 5.0).abs() < 0.05, "p50 {}", a.ms(0.5));
        assert!((a.ms(0.999) - 1000.0).abs() < 1.0, "p999 {}", a.ms(0.999));
        assert!((a.max_ms() - 1000.0).abs() < 1.0);
    }
}
