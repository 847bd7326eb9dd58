//! Reading a Prometheus text exposition (`GET /metrics`): the series of one metric summed over
//! their label sets, and histograms (`_bucket{le=…}`, `_sum`, `_count`) with the arithmetic
//! `push` needs — the difference of two scrapes, its mean, and quantiles estimated from the
//! bucket counts by linear interpolation inside the bucket (as PromQL's `histogram_quantile`).

use std::collections::BTreeMap;

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`herald_processor_queue_seconds_bucket`).
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Parses one line; `None` for comments, blank lines and lines it cannot read.
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        };
        rest = &body[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The sum of every series named `name` (all label sets), `None` when there is none.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for s in text.lines().filter_map(parse_line) {
        if s.name == name {
            *total.get_or_insert(0.0) += s.value;
        }
    }
    total
}

/// A histogram: cumulative counts by upper bound, the sum and the count of the samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`, increasing `le`; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples.
    pub count: f64,
}

impl Histogram {
    /// The histogram `name` in `text`, its label sets summed (bucket by bucket); `None` when
    /// the text has no `name_count`.
    pub fn parse(text: &str, name: &str) -> Option<Histogram> {
        let bucket = format!("{name}_bucket");
        let sum_name = format!("{name}_sum");
        let count_name = format!("{name}_count");
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let (mut sum, mut count, mut seen) = (0.0, 0.0, false);
        for s in text.lines().filter_map(parse_line) {
            if s.name == bucket {
                let Some(le) = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .and_then(|(_, v)| match v.as_str() {
                        "+Inf" => Some(f64::INFINITY),
                        v => v.parse::<f64>().ok(),
                    })
                else {
                    continue;
                };
                // Keyed by the bit pattern: bounds are parsed from the same text each time.
                let e = buckets.entry(order_key(le)).or_insert((le, 0.0));
                e.1 += s.value;
            } else if s.name == sum_name {
                sum += s.value;
            } else if s.name == count_name {
                count += s.value;
                seen = true;
            }
        }
        seen.then(|| Histogram {
            buckets: buckets.into_values().collect(),
            sum,
            count,
        })
    }

    /// What was added between `before` and `self` (a later scrape of the same histogram);
    /// bounds missing from `before` count from zero.
    pub fn since(&self, before: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| {
                    let b = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l.to_bits() == le.to_bits())
                        .map_or(0.0, |b| b.1);
                    (le, (c - b).max(0.0))
                })
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// Mean of the samples.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile (0..=1) estimated from the buckets: linear inside the bucket where
    /// the rank falls (from 0 for the first bucket); a rank in the `+Inf` bucket gives the
    /// highest finite bound (a lower bound of the true value). `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= rank && cum > prev.1 {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let frac = (rank - prev.1) / (cum - prev.1);
                return Some(prev.0 + (le - prev.0) * frac);
            }
            if le.is_finite() {
                prev = (le, cum);
            }
        }
        Some(prev.0)
    }

    /// The finite bucket bounds.
    pub fn bounds(&self) -> Vec<f64> {
        self.buckets
            .iter()
            .map(|b| b.0)
            .filter(|le| le.is_finite())
            .collect()
    }
}

/// A key that sorts like the (non-negative) float.
fn order_key(x: f64) -> u64 {
    if x.is_sign_negative() {
        0
    } else {
        x.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE herald_processor_queue_seconds histogram
herald_processor_queue_seconds_bucket{le=\"0.001\"} 10
herald_processor_queue_seconds_bucket{le=\"0.002\"} 60
herald_processor_queue_seconds_bucket{le=\"0.005\"} 90
herald_processor_queue_seconds_bucket{le=\"0.01\"} 100
herald_processor_queue_seconds_bucket{le=\"+Inf\"} 100
herald_processor_queue_seconds_sum 0.2
herald_processor_queue_seconds_count 100
herald_processor_consumed_total{topic=\"herald.push.high\"} 7
herald_processor_consumed_total{topic=\"herald.push.normal\"} 5
herald_edge_closes_total{node=\"n, \\\"1\\\"\",reason=\"replaced\"} 3 1700000000000
";

    #[test]
    fn lines_with_labels_escapes_and_timestamps() {
        let s = parse_line(
            "herald_edge_closes_total{node=\"n, \\\"1\\\"\",reason=\"replaced\"} 3 1700000000000",
        )
        .unwrap();
        assert_eq!(s.name, "herald_edge_closes_total");
        assert_eq!(
            s.labels,
            vec![
                ("node".to_string(), "n, \"1\"".to_string()),
                ("reason".to_string(), "replaced".to_string())
            ]
        );
        assert_eq!(s.value, 3.0);
        assert_eq!(parse_line("up 1").unwrap().labels, vec![]);
        assert_eq!(
            parse_line("x_bucket{le=\"+Inf\"} +Inf").unwrap().value,
            f64::INFINITY
        );
        assert!(parse_line("# HELP up whatever").is_none());
        assert!(parse_line("").is_none());
        assert!(parse_line("broken{le=\"1} 3").is_none());
        assert!(parse_line("novalue").is_none());
    }

    #[test]
    fn sums_over_label_sets() {
        assert_eq!(sum(TEXT, "herald_processor_consumed_total"), Some(12.0));
        assert_eq!(sum(TEXT, "herald_processor_settled_total"), None);
    }

    #[test]
    fn histogram_mean_and_interpolated_quantiles() {
        let h = Histogram::parse(TEXT, "herald_processor_queue_seconds").unwrap();
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 5);
        assert!((h.mean().unwrap() - 0.002).abs() < 1e-12);
        // Rank 50 falls in (1 ms, 2 ms] holding 50 samples from cumulative 10: 1 + 40/50 ms.
        assert!((h.quantile(0.5).unwrap() - 0.0018).abs() < 1e-9);
        // Rank 99 in (5 ms, 10 ms], cumulative 90 → 100: 5 + 9/10 × 5 ms.
        assert!((h.quantile(0.99).unwrap() - 0.0095).abs() < 1e-9);
        // Rank 5 in the first bucket, interpolated from 0.
        assert!((h.quantile(0.05).unwrap() - 0.0005).abs() < 1e-9);
        assert_eq!(h.bounds(), vec![0.001, 0.002, 0.005, 0.01]);
        assert!(Histogram::parse(TEXT, "nope").is_none());
    }

    #[test]
    fn differences_of_two_scrapes() {
        let before = Histogram::parse(TEXT, "herald_processor_queue_seconds").unwrap();
        let later = TEXT
            .replace("{le=\"0.01\"} 100", "{le=\"0.01\"} 150")
            .replace("{le=\"+Inf\"} 100", "{le=\"+Inf\"} 160")
            .replace("_sum 0.2", "_sum 1.0")
            .replace("_count 100", "_count 160");
        let after = Histogram::parse(&later, "herald_processor_queue_seconds").unwrap();
        let d = after.since(&before);
        assert_eq!(d.count, 60.0);
        assert!((d.sum - 0.8).abs() < 1e-12);
        assert_eq!(
            d.buckets.iter().map(|b| b.1).collect::<Vec<_>>(),
            vec![0.0, 0.0, 0.0, 50.0, 60.0]
        );
        // 50 of 60 in (5 ms, 10 ms]; the rest beyond the last bound: p99 is at least 10 ms.
        assert!((d.quantile(0.5).unwrap() - 0.01).abs() < 0.0051);
        assert_eq!(d.quantile(0.99), Some(0.01));
        let empty = before.since(&before);
        assert_eq!(empty.mean(), None);
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn label_sets_are_added_bucket_by_bucket() {
        let text = "\
h_bucket{shard=\"0\",le=\"1\"} 1
h_bucket{shard=\"0\",le=\"+Inf\"} 2
h_bucket{shard=\"1\",le=\"1\"} 3
h_bucket{shard=\"1\",le=\"+Inf\"} 4
h_sum{shard=\"0\"} 5
h_sum{shard=\"1\"} 6
h_count{shard=\"0\"} 2
h_count{shard=\"1\"} 4
";
        let h = Histogram::parse(text, "h").unwrap();
        assert_eq!(h.buckets, vec![(1.0, 4.0), (f64::INFINITY, 6.0)]);
        assert_eq!((h.sum, h.count), (11.0, 6.0));
    }
}
