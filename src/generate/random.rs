//! Random draws the simulation is made of: weighted choices, times of day, how
//! often and when things change, and when an event arrives.

use rand::RngExt;
use rand::rngs::StdRng;

use super::calendar::{DAY, HOUR, Ts};

/// Relative activity per hour of day (UTC): quiet nights, an evening peak.
const HOUR_WEIGHTS: [u32; 24] = [
    2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 11, 12, 11, 10, 10, 11, 12, 14, 16, 17, 15, 10, 5,
];

/// An index into `items`, drawn with the relative weights `weight` gives them.
pub(super) fn weighted_pick<T>(rng: &mut StdRng, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    let mut x = rng.random_range(0..total);
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if x < w {
            return i;
        }
        x -= w;
    }
    items.len() - 1
}

/// An index drawn with the given relative weights.
pub(super) fn weighted_index(rng: &mut StdRng, weights: &[u32]) -> usize {
    weighted_pick(rng, weights, |&w| w)
}

/// A different index in `0..len` (the same one if there is no other).
pub(super) fn other_index(rng: &mut StdRng, current: usize, len: usize) -> usize {
    if len < 2 {
        return current;
    }
    (current + rng.random_range(1..len)) % len
}

/// A time of day in seconds, following [`HOUR_WEIGHTS`].
pub(super) fn time_of_day(rng: &mut StdRng) -> Ts {
    weighted_index(rng, &HOUR_WEIGHTS) as Ts * HOUR + rng.random_range(0..HOUR)
}

/// How many times something happens when it happens `mean` times on average:
/// geometric, so mostly 0 or 1 and now and then several.
fn geometric_count(rng: &mut StdRng, mean: f64) -> usize {
    let p = mean / (1.0 + mean);
    let mut n = 0;
    while n < 12 && rng.random_bool(p) {
        n += 1;
    }
    n
}

/// Random moments of the changes to something that exists from `from` on.
pub(super) fn change_times(rng: &mut StdRng, from: Ts, horizon: Ts, per_year: f64) -> Vec<Ts> {
    if from + 1 >= horizon {
        return Vec::new();
    }
    let mean = per_year * (horizon - from) as f64 / (365.0 * DAY as f64);
    (0..geometric_count(rng, mean))
        .map(|_| rng.random_range(from + 1..horizon))
        .collect()
}

/// When an event that happened at `time` reaches the file: usually right away,
/// with probability `share` one to four days later.
pub(super) fn arrival(rng: &mut StdRng, time: Ts, share: f64) -> Ts {
    if rng.random_bool(share) {
        time + rng.random_range(DAY..=4 * DAY)
    } else {
        time
    }
}

/// Weighted choice among items that exist at a given moment. The items are sorted
/// by the moment they start to exist, so those that exist form a prefix.
pub(super) struct Sampler {
    starts: Vec<Ts>,
    /// Running sums of the weights.
    cumulative: Vec<f64>,
}

impl Sampler {
    pub(super) fn new(starts: Vec<Ts>, weights: impl IntoIterator<Item = f64>) -> Sampler {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Sampler { starts, cumulative }
    }

    /// An item that started strictly before `at`, if any.
    pub(super) fn pick(&self, rng: &mut StdRng, at: Ts) -> Option<usize> {
        let available = self.starts.partition_point(|&s| s < at);
        let total = *self.cumulative[..available].last()?;
        let x = rng.random::<f64>() * total;
        let index = self.cumulative[..available].partition_point(|&c| c <= x);
        Some(index.min(available - 1))
    }
}
