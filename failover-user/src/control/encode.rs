//! The metrics' exposition through `prometheus-client`: on each scrape the values are read
//! from their lock-free atomics into a snapshot, and the crate's OpenMetrics text encoder
//! writes it (HELP and TYPE per family, label values escaped, counters with `_total`, `# EOF`).
//! Nothing on the heartbeat thread takes a lock for it.
use std::borrow::Cow;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

/// One series without labels of its own.
#[derive(Clone, Debug)]
pub(super) struct Series {
    /// Its name; a counter's without `_total` (the encoder adds it).
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) counter: bool,
    pub(super) value: f64,
}

/// A histogram: seconds, cumulative bucket counts by upper bound (as the daemon keeps them).
#[derive(Clone, Debug)]
pub(super) struct Hist {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) sum: f64,
    pub(super) count: u64,
    pub(super) cumulative: Vec<(f64, u64)>,
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    pub(super) series: Vec<Series>,
    pub(super) histograms: Vec<Hist>,
    /// The health checks: name, passing, failed runs.
    pub(super) checks: Vec<(String, bool, u64)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for s in &self.series {
            if s.counter {
                let c = ConstCounter::new(s.value as u64);
                let m = encoder.encode_descriptor(s.name, s.help, None, c.metric_type())?;
                c.encode(m)?;
            } else if s.value.fract() == 0.0 && s.value.abs() < 9.0e15 {
                // Whole numbers (a role code, an epoch, a flag) read as such: `2`, not `2.0`.
                let g = ConstGauge::new(s.value as i64);
                let m = encoder.encode_descriptor(s.name, s.help, None, g.metric_type())?;
                g.encode(m)?;
            } else {
                let g = ConstGauge::new(s.value);
                let m = encoder.encode_descriptor(s.name, s.help, None, g.metric_type())?;
                g.encode(m)?;
            }
        }
        if !self.checks.is_empty() {
            let mut m = encoder.encode_descriptor(
                "failover_check_up",
                "1 while the health check passes (after fall/rise).",
                None,
                MetricType::Gauge,
            )?;
            for (name, ok, _) in &self.checks {
                let name = label_value(name);
                let labels = [("check", name.as_str())];
                m.encode_family(&labels)?.encode_gauge(&i64::from(*ok))?;
            }
            let mut m = encoder.encode_descriptor(
                "failover_check_failures",
                "Failed runs of the health check.",
                None,
                MetricType::Counter,
            )?;
            for (name, _, failures) in &self.checks {
                let name = label_value(name);
                let labels = [("check", name.as_str())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(failures, None)?;
            }
        }
        for h in &self.histograms {
            // The encoder wants each bucket's own count and a last bucket of +Inf.
            let mut buckets = Vec::with_capacity(h.cumulative.len() + 1);
            let mut below = 0;
            for (le, cum) in &h.cumulative {
                buckets.push((*le, cum.saturating_sub(below)));
                below = *cum;
            }
            buckets.push((f64::MAX, h.count.saturating_sub(below)));
            let mut m = encoder.encode_descriptor(h.name, h.help, None, MetricType::Histogram)?;
            m.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

/// Escapes a label value as the text format requires (backslash, quote, newline): the
/// crate writes label values as given.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The OpenMetrics text of `snapshot`, every series labelled `node="<node>"`.
pub(super) fn text(node: &str, snapshot: Snapshot) -> String {
    let mut registry = Registry::with_labels(std::iter::once((
        Cow::Borrowed("node"),
        Cow::Owned(label_value(node)),
    )));
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        out = format!("# the metrics could not be encoded: {e}\n# EOF\n");
    }
    out
}
