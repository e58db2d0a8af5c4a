//! Quantiles of a log-linear histogram, and the difference of two
//! readings (what `top` shows: the last interval only).
use spawnprof_common::metrics::{BUCKETS, Hist, bucket_upper_ns};

/// The `q` quantile in ns, interpolated linearly inside its bucket as
/// Prometheus's `histogram_quantile` does (the overflow bucket gives its
/// lower bound). `None` for an empty histogram.
pub fn quantile_ns(h: &Hist, q: f64) -> Option<f64> {
    let total: u64 = h.buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (i, &n) in h.buckets.iter().enumerate() {
        if n == 0 || ((seen + n) as f64) < rank {
            seen += n;
            continue;
        }
        let lower = if i == 0 {
            0.0
        } else {
            bucket_upper_ns(i - 1).unwrap_or(0) as f64
        };
        let Some(upper) = bucket_upper_ns(i) else {
            return Some(lower);
        };
        let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
        return Some(lower + (upper as f64 - lower) * within);
    }
    bucket_upper_ns(BUCKETS - 2).map(|u| u as f64)
}

/// `now` less `before` (a histogram only grows; a missing one is empty).
pub fn delta(now: &Hist, before: Option<&Hist>) -> Hist {
    let Some(b) = before else {
        return *now;
    };
    let mut d = Hist {
        count: now.count.saturating_sub(b.count),
        sum_ns: now.sum_ns.saturating_sub(b.sum_ns),
        ..Hist::default()
    };
    for ((d, n), b) in d.buckets.iter_mut().zip(&now.buckets).zip(&b.buckets) {
        *d = n.saturating_sub(*b);
    }
    d
}

#[cfg(test)]
mod tests {
    use spawnprof_common::metrics::bucket;

    use super::*;

    fn hist(values: &[u64]) -> Hist {
        let mut h = Hist::default();
        for &v in values {
            h.count += 1;
            h.sum_ns += v;
            h.buckets[bucket(v)] += 1;
        }
        h
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let mut values = vec![10_000u64; 99];
        values.push(5_000_000);
        let h = hist(&values);
        let p50 = quantile_ns(&h, 0.5).unwrap();
        let p100 = quantile_ns(&h, 1.0).unwrap();
        // Within a bucket's width (25%) of the true value.
        assert!((8_000.0..=12_500.0).contains(&p50), "{p50}");
        assert!((4_000_000.0..=6_300_000.0).contains(&p100), "{p100}");
        assert_eq!(quantile_ns(&Hist::default(), 0.5), None);
    }

    #[test]
    fn a_delta_keeps_only_the_interval() {
        let before = hist(&[1_000, 2_000]);
        let now = hist(&[1_000, 2_000, 1_000_000]);
        let d = delta(&now, Some(&before));
        assert_eq!(d.count, 1);
        assert_eq!(d.buckets[bucket(1_000_000)], 1);
        assert_eq!(d.buckets.iter().sum::<u64>(), 1);
    }
}
