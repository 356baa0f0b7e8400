//! Classification metrics and the VADER baseline.

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
    fn vader_thresholds() {
        assert_eq!(vader_label(0.05), 2);
        assert_eq!(vader_label(0.049), 1);
        assert_eq!(vader_label(-0.05), 0);
        assert_eq!(vader_label(0.0), 1);
    }
}
