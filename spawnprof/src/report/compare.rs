//! Is B different from A, or is it noise? The statistics behind
//! `spawnprof diff`: samples of each distribution kept in bounded memory,
//! a rank test (Mann–Whitney U) that one side tends to take longer, and
//! bootstrap intervals for the change of a percentile. Spawn times are
//! skewed and a single stall can move a mean tenfold, so the diff speaks
//! of medians and ranks, not means.

/// The significance level: a change is "within noise" unless the rank
/// test gives p below it (strict, as a diff compares some 20 stages).
pub const ALPHA: f64 = 0.01;

/// A deterministic random source (splitmix64): reports must come out the
/// same every time they are drawn.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Up to `cap` values drawn uniformly from all those offered (reservoir
/// sampling), so a million-spawn recording compares in fixed memory.
#[derive(Clone, Debug)]
pub struct Reservoir {
    cap: usize,
    seen: u64,
    values: Vec<u64>,
    rng: Rng,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Self {
        Self {
            cap: cap.max(1),
            seen: 0,
            values: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    pub fn push(&mut self, v: u64) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
            return;
        }
        // Uniform in 0..seen: replaces a kept value with probability cap/seen.
        let j = ((u128::from(self.rng.next_u64()) * u128::from(self.seen)) >> 64) as usize;
        if j < self.cap {
            self.values[j] = v;
        }
    }

    /// Another reservoir's values joined in, each side weighed by how many
    /// values it saw.
    pub fn merge(&mut self, mut other: Reservoir) {
        let seen = self.seen + other.seen;
        if self.values.len() + other.values.len() <= self.cap {
            self.values.append(&mut other.values);
            self.seen = seen;
            return;
        }
        let from_other =
            ((self.cap as u128 * u128::from(other.seen)) / u128::from(seen.max(1))) as usize;
        let from_self = self.cap - from_other.min(self.cap);
        let mut keep = take_random(&mut self.values, from_self, &mut self.rng);
        keep.extend(take_random(&mut other.values, from_other, &mut self.rng));
        self.values = keep;
        self.seen = seen;
    }

    /// How many values were offered.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The values kept.
    pub fn values(&self) -> &[u64] {
        &self.values
    }
}

/// `n` of `values` chosen at random (all of them when there are fewer).
fn take_random(values: &mut [u64], n: usize, rng: &mut Rng) -> Vec<u64> {
    let n = n.min(values.len());
    for i in 0..n {
        let j = i + rng.below(values.len() - i);
        values.swap(i, j);
    }
    values[..n].to_vec()
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// The two-sided p-value of the Mann–Whitney U test that values of `a`
/// and `b` come from the same distribution (normal approximation with a
/// tie correction and a continuity correction; good from a few values a
/// side). `None` when a side is empty.
pub fn rank_test(a: &[u64], b: &[u64]) -> Option<f64> {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(u64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by_key(|&(v, _)| v);
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let j = i + all[i..].iter().take_while(|x| x.0 == all[i].0).count();
        // Ranks i+1..=j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        rank_sum_a += mean_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let n = na + nb;
    let u = rank_sum_a - na * (na + 1.0) / 2.0;
    let mean = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(1.0);
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    Some(erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0))
}

/// The complementary error function (Chebyshev fit, relative error below
/// 1.2e-7: Numerical Recipes' `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Resamples per interval, and values per side they draw from.
const RESAMPLES: usize = 500;
const RESAMPLE_SIZE: usize = 4_000;

/// A bootstrap interval (1 − [`ALPHA`] two-sided, percentile method) for
/// the change B − A of the `p`-th percentile; `None` when a side is empty.
pub fn percentile_change_interval(a: &[u64], b: &[u64], p: f64, seed: u64) -> Option<(i128, i128)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let a = subsample(a, &mut rng);
    let b = subsample(b, &mut rng);
    let mut changes: Vec<i128> = Vec::with_capacity(RESAMPLES);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..RESAMPLES {
        let pa = resampled_percentile(&a, p, &mut rng, &mut ra);
        let pb = resampled_percentile(&b, p, &mut rng, &mut rb);
        changes.push(i128::from(pb) - i128::from(pa));
    }
    changes.sort_unstable();
    let at = |q: f64| changes[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Some((at(ALPHA / 2.0), at(1.0 - ALPHA / 2.0)))
}

/// At most [`RESAMPLE_SIZE`] values, so an interval costs the same for
/// any recording (wider, not wrong, for the largest ones).
fn subsample(values: &[u64], rng: &mut Rng) -> Vec<u64> {
    let mut v = values.to_vec();
    if v.len() > RESAMPLE_SIZE {
        v = take_random(&mut v, RESAMPLE_SIZE, rng);
    }
    v
}

fn resampled_percentile(values: &[u64], p: f64, rng: &mut Rng, buf: &mut Vec<u64>) -> u64 {
    buf.clear();
    buf.extend((0..values.len()).map(|_| values[rng.below(values.len())]));
    let n = buf.len();
    let k = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    *buf.select_nth_unstable(k).1
}

/// How B compares with A for one distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub a_n: u64,
    pub b_n: u64,
    pub a_p50: Option<u64>,
    pub b_p50: Option<u64>,
    pub a_p90: Option<u64>,
    pub b_p90: Option<u64>,
    pub a_mean: Option<u64>,
    pub b_mean: Option<u64>,
    /// B − A of the medians, and its interval.
    pub p50_change: Option<(i128, (i128, i128))>,
    pub p90_change: Option<(i128, (i128, i128))>,
    /// The rank test's p-value.
    pub p_value: Option<f64>,
}

/// What the comparison says in a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Slower,
    Faster,
    WithinNoise,
    /// One side has no values: nothing to test.
    Untested,
}

impl Comparison {
    /// Compares two samples (sorted here), `seed` for the intervals.
    pub fn of(a: &Reservoir, b: &Reservoir, seed: u64) -> Self {
        let mut sa = a.values().to_vec();
        let mut sb = b.values().to_vec();
        sa.sort_unstable();
        sb.sort_unstable();
        let mean = |v: &[u64]| {
            (!v.is_empty())
                .then(|| (v.iter().map(|&x| u128::from(x)).sum::<u128>() / v.len() as u128) as u64)
        };
        let change = |p: f64, seed: u64| {
            let (pa, pb) = (percentile(&sa, p)?, percentile(&sb, p)?);
            let ci = percentile_change_interval(&sa, &sb, p, seed)?;
            Some((i128::from(pb) - i128::from(pa), ci))
        };
        Comparison {
            a_n: a.seen(),
            b_n: b.seen(),
            a_p50: percentile(&sa, 0.5),
            b_p50: percentile(&sb, 0.5),
            a_p90: percentile(&sa, 0.9),
            b_p90: percentile(&sb, 0.9),
            a_mean: mean(&sa),
            b_mean: mean(&sb),
            p50_change: change(0.5, seed),
            p90_change: change(0.9, seed ^ 0x5eed),
            p_value: rank_test(&sa, &sb),
        }
    }

    /// Slower or faster when the rank test says so (the direction from
    /// the medians, or from the ranks when the medians tie); else within
    /// noise.
    pub fn verdict(&self) -> Verdict {
        let Some(p) = self.p_value else {
            return Verdict::Untested;
        };
        if p >= ALPHA {
            return Verdict::WithinNoise;
        }
        let up = match self.p50_change {
            Some((d, _)) if d != 0 => d > 0,
            _ => match self.p90_change {
                Some((d, _)) if d != 0 => d > 0,
                _ => self.b_mean >= self.a_mean,
            },
        };
        if up { Verdict::Slower } else { Verdict::Faster }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservoir(values: &[u64]) -> Reservoir {
        let mut r = Reservoir::new(20_000, 1);
        values.iter().for_each(|&v| r.push(v));
        r
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
        ] {
            assert!(
                (erfc(x) - want).abs() < 1e-6,
                "erfc({x}) = {} not {want}",
                erfc(x)
            );
        }
    }

    #[test]
    fn the_rank_test_finds_a_shift_and_not_noise() {
        let mut rng = Rng::new(7);
        let noise = |rng: &mut Rng, base: u64| base + rng.below(1_000) as u64;
        let a: Vec<u64> = (0..200).map(|_| noise(&mut rng, 10_000)).collect();
        let same: Vec<u64> = (0..200).map(|_| noise(&mut rng, 10_000)).collect();
        let shifted: Vec<u64> = (0..200).map(|_| noise(&mut rng, 10_300)).collect();
        assert!(rank_test(&a, &same).unwrap() > ALPHA);
        assert!(rank_test(&a, &shifted).unwrap() < 1e-6);
        assert_eq!(rank_test(&[5, 5, 5], &[5, 5]), Some(1.0), "all tied");
        assert_eq!(rank_test(&[], &[1]), None);
    }

    /// The case that made means useless: 20 spawns a side, B's typical
    /// dup_mmap twice A's, but one 17.5 ms stall in A makes A's mean ten
    /// times B's.
    #[test]
    fn one_outlier_does_not_turn_slower_into_faster() {
        let a: Vec<u64> = (0..19)
            .map(|i| 30_000 + i * 200)
            .chain([17_500_000])
            .collect();
        let b: Vec<u64> = (0..20).map(|i| 72_000 + i * 200).collect();
        let c = Comparison::of(&reservoir(&a), &reservoir(&b), 3);
        assert!(c.a_mean.unwrap() > 10 * c.b_mean.unwrap() / 2, "{c:?}");
        assert_eq!(c.verdict(), Verdict::Slower, "{c:?}");
        let (d, (lo, hi)) = c.p50_change.unwrap();
        assert!(d > 35_000 && lo > 0 && hi >= d, "{c:?}");
        // The same recording against itself: no change, within noise.
        let same = Comparison::of(&reservoir(&a), &reservoir(&a), 3);
        assert_eq!(same.verdict(), Verdict::WithinNoise);
        assert_eq!(same.p50_change.unwrap().0, 0);
    }

    #[test]
    fn reservoirs_stay_bounded_and_merge_by_weight() {
        let mut a = Reservoir::new(100, 1);
        (0..10_000).for_each(|_| a.push(1));
        let mut b = Reservoir::new(100, 2);
        (0..30_000).for_each(|_| b.push(2));
        a.merge(b);
        assert_eq!(a.seen(), 40_000);
        assert_eq!(a.values().len(), 100);
        let twos = a.values().iter().filter(|&&v| v == 2).count();
        assert_eq!(twos, 75, "three quarters came from the larger side");
    }
}
