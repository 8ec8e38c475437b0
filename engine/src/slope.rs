//! A robust straight line through noisy points: the Theil–Sen estimator (the median of the
//! slopes between every pair of points) and Kendall's rank correlation, which says how steadily
//! the points rise. Both shrug off a single outlier, which moves a least-squares line as far as
//! its size: one scrape that caught a burst must not look like growth.

use std::cmp::Ordering;

/// Pairs grow with the square of the points: beyond this many, every k-th point is used, which
/// keeps a ten-minute window at one-second scrapes cheap and loses no robustness.
const MAX_POINTS: usize = 240;

/// A line through the points, and how well the points follow it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Fit {
    /// Units of `y` per unit of `x`: the median of the pairwise slopes.
    pub slope: f64,
    /// The line's value at `x = 0`: the median of `y - slope * x`.
    pub intercept: f64,
    /// Kendall's tau: +1 when every later point is higher, -1 when every later point is lower,
    /// near 0 for noise or a sawtooth around a level.
    pub steadiness: f64,
}

impl Fit {
    /// The line's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// The robust line through `points` (`x` strictly increasing); `None` for fewer than two.
pub(super) fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let stride = points.len().div_ceil(MAX_POINTS).max(1);
    let points: Vec<(f64, f64)> = points.iter().copied().step_by(stride).collect();
    if points.len() < 2 {
        return None;
    }
    let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
    let mut concordance = 0i64;
    for (i, &(x1, y1)) in points.iter().enumerate() {
        for &(x2, y2) in &points[i + 1..] {
            slopes.push((y2 - y1) / (x2 - x1));
            concordance += match y2.total_cmp(&y1) {
                Ordering::Greater => 1,
                Ordering::Less => -1,
                Ordering::Equal => 0,
            };
        }
    }
    let pairs = slopes.len() as f64;
    let slope = median(&mut slopes)?;
    let mut offsets: Vec<f64> = points.iter().map(|(x, y)| y - slope * x).collect();
    let intercept = median(&mut offsets)?;
    Some(Fit {
        slope,
        intercept,
        steadiness: concordance as f64 / pairs,
    })
}

/// The median of `values` (reordered in place); `None` when empty or not all numbers.
pub(super) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let odd = values.len() % 2 == 1;
    let (below, upper, _) = values.select_nth_unstable_by(values.len() / 2, f64::total_cmp);
    let upper = *upper;
    if odd {
        return Some(upper);
    }
    let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(slope: f64, n: usize) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (i as f64, 10.0 + slope * i as f64))
            .collect()
    }

    #[test]
    fn a_straight_line_is_fitted_exactly_and_is_perfectly_steady() {
        let fit = fit(&line(2.5, 20)).unwrap();
        assert!((fit.slope - 2.5).abs() < 1e-9);
        assert!((fit.at(0.0) - 10.0).abs() < 1e-9);
        assert!((fit.steadiness - 1.0).abs() < 1e-9);
        let falling = super::fit(&line(-1.0, 20)).unwrap();
        assert!((falling.steadiness + 1.0).abs() < 1e-9);
    }

    #[test]
    fn one_spike_moves_neither_the_slope_nor_the_level() {
        let mut points = line(0.0, 30);
        points[20].1 = 10_000.0;
        let fit = fit(&points).unwrap();
        assert_eq!(fit.slope, 0.0);
        assert_eq!(fit.at(29.0), 10.0);
        assert!(fit.steadiness.abs() < 0.1, "{}", fit.steadiness);
    }

    #[test]
    fn a_sawtooth_around_a_level_is_not_steady() {
        let points: Vec<(f64, f64)> = (0..60)
            .map(|i| (i as f64, 100.0 + (i % 10) as f64 * 5.0))
            .collect();
        let fit = fit(&points).unwrap();
        assert!(fit.steadiness.abs() < 0.2, "{}", fit.steadiness);
        assert!(fit.slope.abs() < 0.5, "{}", fit.slope);
    }

    #[test]
    fn many_points_are_thinned_to_the_same_line() {
        let fit = fit(&line(0.5, 5_000)).unwrap();
        assert!((fit.slope - 0.5).abs() < 1e-9);
        assert!((fit.at(4_999.0) - (10.0 + 0.5 * 4_999.0)).abs() < 1e-6);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_pair_s_mean() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [1.0, f64::NAN]), None);
    }
}
