//! Request counts and latencies by route and status, and the application's own counters,
//! rendered in Prometheus text format. Hand-rolled because it is one histogram family and a
//! few counters: a registry crate would be more code to wire.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    /// `route` must be the route template (`/v2/organizations/{id}`), never the raw path, so
    /// that label cardinality stays bounded whatever clients send.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = match self.series.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let s = map
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// The HTTP series, then the application's metrics.
    pub fn render(&self, app: &[keyplane_app::metrics::Counter]) -> String {
        let map = match self.series.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        out.push_str(
            "# HELP keyplane_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE keyplane_http_requests_total counter\n");
        for ((m, r, st), s) in map.iter() {
            let _ = writeln!(
                out,
                "keyplane_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{st}\"}} {}",
                escape(r),
                s.count
            );
        }
        out.push_str("# HELP keyplane_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE keyplane_http_request_duration_seconds histogram\n");
        for ((m, r, st), s) in map.iter() {
            let labels = format!("method=\"{m}\",route=\"{}\",status=\"{st}\"", escape(r));
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "keyplane_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "keyplane_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "keyplane_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "keyplane_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        for c in app {
            let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
            let _ = writeln!(out, "# TYPE {} {}", c.name, c.kind.as_str());
            let _ = writeln!(out, "{} {}", c.name, c.value);
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = HttpMetrics::default();
        m.observe("GET", "/healthz", 200, Duration::from_micros(300));
        m.observe("GET", "/healthz", 200, Duration::from_millis(20));
        let mut app = keyplane_app::metrics::Counters::default().all();
        app.push(keyplane_app::metrics::Counter {
            name: "keyplane_data_keys_held",
            help: "Plaintext data keys in memory.",
            kind: keyplane_app::metrics::MetricKind::Gauge,
            value: 0,
        });
        let text = m.render(&app);
        assert!(text.contains(
            r#"keyplane_http_requests_total{method="GET",route="/healthz",status="200"} 2"#
        ));
        assert!(text.contains(r#"route="/healthz",status="200",le="0.0005"} 1"#));
        assert!(text.contains(r#"route="/healthz",status="200",le="0.025"} 2"#));
        assert!(
            text.contains("# TYPE keyplane_jobs_done_total counter\nkeyplane_jobs_done_total 0\n")
        );
        assert!(text.contains("# TYPE keyplane_data_keys_held gauge\nkeyplane_data_keys_held 0\n"));
    }
}
