//! Classification metrics, calibration error and the VADER baseline.

use serde::{Deserialize, Serialize};

/// Counts of (actual, predicted) label pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// `counts[actual][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

impl Confusion {
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            counts: vec![vec![0; classes]; classes],
        }
    }

    /// Pairs `actual[i]` with `predicted[i]`.
    pub fn from_labels(classes: usize, actual: &[usize], predicted: &[usize]) -> Confusion {
        let mut m = Confusion::new(classes);
        for (&a, &p) in actual.iter().zip(predicted) {
            m.add(a, p);
        }
        m
    }

    /// Panics on a label outside `0..classes` (a caller bug, never input data).
    pub fn add(&mut self, actual: usize, predicted: usize) {
        self.counts[actual][predicted] += 1;
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// Precision, recall and F1 of one class; 0 where undefined.
    pub fn class(&self, c: usize) -> ClassScores {
        let tp = self.counts[c][c];
        let predicted: usize = self.counts.iter().map(|row| row[c]).sum();
        let support: usize = self.counts[c].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    }

    /// The unweighted mean of the per-class F1 scores.
    pub fn macro_f1(&self) -> f64 {
        let n = self.counts.len();
        (0..n).map(|c| self.class(c).f1).sum::<f64>() / n.max(1) as f64
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Bins of the expected calibration error the project reports (Guo et al. 2017 use 15).
pub const ECE_BINS: usize = 15;

/// Expected calibration error: the top-class confidences cut into `bins` equal-width
/// bins, bin m (from 1) holding those in ((m - 1) / bins, m / bins] (a confidence of 0
/// goes to the first); the mean over examples of |accuracy - mean confidence| of each
/// one's bin, i.e. sum over bins of (size / n) * |accuracy - confidence|. `correct[i]`
/// says whether the top class of example i is its true label. 0 for no examples.
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    let bins = bins.max(1);
    // Per bin: examples, sum of confidences, correct ones.
    let mut tally = vec![(0usize, 0.0f64, 0usize); bins];
    for (&c, &right) in confidence.iter().zip(correct) {
        let c = c.clamp(0.0, 1.0);
        let bin = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        let t = &mut tally[bin];
        t.0 += 1;
        t.1 += c;
        t.2 += usize::from(right);
    }
    let n: usize = tally.iter().map(|t| t.0).sum();
    if n == 0 {
        return 0.0;
    }
    tally
        .iter()
        .filter(|t| t.0 > 0)
        .map(|&(size, confidence, right)| {
            let gap = (right as f64 - confidence).abs() / size as f64;
            size as f64 / n as f64 * gap
        })
        .sum()
}

/// VADER's recommended thresholds: compound >= 0.05 positive, <= -0.05 negative.
pub fn vader_label(compound: f32) -> usize {
    if compound >= 0.05 {
        2
    } else if compound <= -0.05 {
        0
    } else {
        1
    }
}

/// A 95% percentile-bootstrap interval of `stat` over `n` examples: `stat` gets the
/// indices of one resample (drawn with replacement; 2000 of them, seeded so that a
/// report reproduces). Paired comparisons pass a `stat` that computes both sides on
/// the same indices.
pub fn bootstrap_ci(n: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    const RESAMPLES: usize = 2000;
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sample = vec![0; n];
    let mut stats: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for s in sample.iter_mut() {
                *s = rng.random_range(0..n);
            }
            stat(&sample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_confusion_matrix() {
        //            predicted: neg neu pos
        // actual neg:            3   1   0
        // actual neu:            1   2   1
        // actual pos:            0   0   2
        let actual = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2];
        let predicted = [0, 0, 0, 1, 0, 1, 1, 2, 2, 2];
        let m = Confusion::from_labels(3, &actual, &predicted);
        assert_eq!(m.counts, vec![vec![3, 1, 0], vec![1, 2, 1], vec![0, 0, 2]]);
        assert!((m.accuracy() - 0.7).abs() < 1e-12);
        let neg = m.class(0);
        assert!((neg.precision - 0.75).abs() < 1e-12 && (neg.recall - 0.75).abs() < 1e-12);
        let neu = m.class(1);
        assert!((neu.precision - 2.0 / 3.0).abs() < 1e-12 && (neu.recall - 0.5).abs() < 1e-12);
        assert!((neu.f1 - 4.0 / 7.0).abs() < 1e-12);
        let pos = m.class(2);
        assert!((pos.f1 - 0.8).abs() < 1e-12 && pos.support == 2);
        assert!((m.macro_f1() - (0.75 + 4.0 / 7.0 + 0.8) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn undefined_scores_are_zero() {
        let m = Confusion::from_labels(3, &[0, 0], &[0, 0]);
        assert_eq!(m.class(1).f1, 0.0);
        assert!((m.macro_f1() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn expected_calibration_error_by_hand() {
        // 15 bins of width 1/15. Ten examples in three bins:
        //   (14/15, 1]:  0.94 0.96 0.95 0.99, 3 right: |0.75 - 0.96| = 0.21, weight 0.4
        //   (8/15, 9/15]: 0.55 0.55,          1 right: |0.50 - 0.55| = 0.05, weight 0.2
        //   (5/15, 6/15]: 0.36 x 4,           2 right: |0.50 - 0.36| = 0.14, weight 0.4
        // ECE = 0.4 * 0.21 + 0.2 * 0.05 + 0.4 * 0.14 = 0.084 + 0.010 + 0.056 = 0.150.
        let confidence = [0.94, 0.96, 0.95, 0.99, 0.55, 0.55, 0.36, 0.36, 0.36, 0.36];
        let correct = [
            true, true, false, true, true, false, true, false, true, false,
        ];
        let ece = expected_calibration_error(&confidence, &correct, ECE_BINS);
        assert!((ece - 0.150).abs() < 1e-12, "{ece}");
        // Perfectly calibrated bins give 0; no examples give 0.
        let ece = expected_calibration_error(&[0.5, 0.5, 1.0], &[true, false, true], 15);
        assert!(ece.abs() < 1e-12, "{ece}");
        assert_eq!(expected_calibration_error(&[], &[], 15), 0.0);
    }

    #[test]
    fn calibration_bins_are_closed_on_the_right() {
        // 4 bins: 0.5 is in (0.25, 0.5], with 0.3; 0.75 in (0.5, 0.75]; 0 in the first.
        // (0.25, 0.5]: mean 0.4, 1 of 2 right: 0.1 * 2/4; (0.5, 0.75]: 0.75, wrong: 0.75
        // * 1/4; [0, 0.25]: 0, wrong: 0.
        let ece =
            expected_calibration_error(&[0.5, 0.3, 0.75, 0.0], &[true, false, false, false], 4);
        assert!((ece - (0.1 * 0.5 + 0.75 * 0.25)).abs() < 1e-12, "{ece}");
    }

    #[test]
    fn vader_thresholds() {
        assert_eq!(vader_label(0.05), 2);
        assert_eq!(vader_label(0.049), 1);
        assert_eq!(vader_label(-0.05), 0);
        assert_eq!(vader_label(0.0), 1);
    }

    #[test]
    fn the_bootstrap_interval_brackets_the_mean_and_narrows_with_n() {
        fn mean(xs: &[f64]) -> impl Fn(&[usize]) -> f64 + '_ {
            move |ix| ix.iter().map(|&i| xs[i]).sum::<f64>() / ix.len() as f64
        }
        let small: Vec<f64> = (0..20).map(|i| f64::from(i % 2)).collect();
        let large: Vec<f64> = (0..2000).map(|i| f64::from(i % 2)).collect();
        let (lo, hi) = bootstrap_ci(small.len(), 1, mean(&small));
        assert!(lo < 0.5 && hi > 0.5 && lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
        let (lo2, hi2) = bootstrap_ci(large.len(), 1, mean(&large));
        assert!(
            lo2 < 0.5 && hi2 > 0.5 && hi2 - lo2 < (hi - lo) / 3.0,
            "{lo2} {hi2}"
        );
        assert_eq!(
            bootstrap_ci(small.len(), 1, mean(&small)),
            (lo, hi),
            "seeded"
        );
        assert_eq!(bootstrap_ci(0, 1, |_| 1.0), (0.0, 0.0));
    }
}
