//! What the open-loop benchmarks share: latency percentiles, error rate, the printed line.

/// What an open-loop run measured.
pub struct Outcome {
    pub sent: u64,
    pub errors: u64,
    /// Milliseconds from when each request was due to its answer.
    pub latencies: Vec<f64>,
    pub seconds: f64,
}

impl Outcome {
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.sent.max(1) as f64
    }

    /// Failure when more than `max_error_rate` of the requests failed (and says so).
    pub fn exit_code(&self, max_error_rate: f64) -> std::process::ExitCode {
        if self.error_rate() > max_error_rate {
            eprintln!(
                "error rate {:.2}% above the threshold of {:.2}%",
                self.error_rate() * 100.0,
                max_error_rate * 100.0
            );
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        }
    }

    /// One line; `rate` 0 means a closed loop (no target rate).
    pub fn print(&self, name: &str, rate: u64) {
        let target = if rate == 0 {
            "closed loop,".to_owned()
        } else {
            format!("target {rate}/s")
        };
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| {
            sorted
                .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "{name:<16} {target} achieved {:.0}/s, errors {:.2}%, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            sorted.len() as f64 / self.seconds,
            self.error_rate() * 100.0,
            at(0.50),
            at(0.95),
            at(0.99),
            sorted.last().copied().unwrap_or(0.0),
            self.sent
        );
    }
}
