//! Temperature scaling of the sentiment softmax (Guo et al., "On Calibration of Modern
//! Neural Networks", 2017): one temperature T > 0, fitted on held-out data so that
//! softmax(logits / T) has the least negative log-likelihood of the true labels, so
//! that a score of 0.8 is right about 80% of the time. Serving divides the logits by
//! the version's T (`Manifest::temperature`). Dividing by T > 0 keeps the order of the
//! logits: labels, accuracy and F1 do not change, only how sure the scores say it is.
//!
//! The logits are the network's alone, as serving computes them: the per-topic priors
//! added in training (`topic_bias`) are not part of them.

use std::collections::BTreeMap;

use empathy_model::Calibration;

use crate::metrics::{ECE_BINS, expected_calibration_error};

/// The range the temperature is searched in.
pub const MIN_TEMPERATURE: f64 = 0.05;
pub const MAX_TEMPERATURE: f64 = 20.0;

/// Sentiment logits of some examples and their true labels (indices into
/// SENTIMENT_LABELS), in the same order.
pub struct Scored {
    pub logits: Vec<[f32; 3]>,
    pub labels: Vec<usize>,
}

/// log softmax(logits / t), computed stably (the largest logit subtracted first).
fn log_softmax(logits: &[f32; 3], t: f64) -> [f64; 3] {
    let z = logits.map(|x| f64::from(x) / t);
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = max + z.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    z.map(|x| x - log_sum)
}

/// softmax(logits / t).
pub fn softmax(logits: &[f32; 3], t: f64) -> [f64; 3] {
    log_softmax(logits, t).map(f64::exp)
}

/// Mean negative log-likelihood of the true labels under softmax(logits / t); 0 for
/// no examples.
pub fn nll(scored: &Scored, t: f64) -> f64 {
    let n = scored.labels.len();
    if n == 0 {
        return 0.0;
    }
    let total: f64 = scored
        .logits
        .iter()
        .zip(&scored.labels)
        .map(|(z, &y)| -log_softmax(z, t)[y])
        .sum();
    total / n as f64
}

/// The temperature in [MIN_TEMPERATURE, MAX_TEMPERATURE] with the least `nll`, by
/// golden-section search on log T; 1 without examples. The NLL is convex in 1 / T (a
/// log-sum-exp of terms linear in it, minus one linear term), so it has one minimum
/// along log T too, which the search finds to within 1e-9 in log T.
pub fn fit_temperature(scored: &Scored) -> f64 {
    if scored.labels.is_empty() {
        return 1.0;
    }
    let f = |u: f64| nll(scored, u.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (MIN_TEMPERATURE.ln(), MAX_TEMPERATURE.ln());
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-9 {
        if fc <= fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// The top-class confidence below which fusion marks an answer low_confidence by
/// default (its --min-confidence); the metrics report how the test split fares there.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;

/// Each example's top-class confidence under softmax(logits / t), and whether the top
/// class is its label.
fn confidences(scored: &Scored, t: f64) -> (Vec<f64>, Vec<bool>) {
    scored
        .logits
        .iter()
        .zip(&scored.labels)
        .map(|(z, &y)| {
            let p = softmax(z, t);
            let top = (0..3).fold(0, |best, k| if p[k] > p[best] { k } else { best });
            (p[top], top == y)
        })
        .unzip()
}

/// Of the examples whose top-class confidence is below `threshold`: their share, and
/// the accuracy of those below and of the rest (0 where there are none).
pub fn split_at_confidence(scored: &Scored, t: f64, threshold: f64) -> (f64, f64, f64) {
    let (confidence, correct) = confidences(scored, t);
    let (mut low, mut low_right, mut rest_right) = (0usize, 0usize, 0usize);
    for (c, right) in confidence.iter().zip(&correct) {
        if *c < threshold {
            low += 1;
            low_right += usize::from(*right);
        } else {
            rest_right += usize::from(*right);
        }
    }
    let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let n = confidence.len();
    (
        rate(low, n),
        rate(low_right, low),
        rate(rest_right, n - low),
    )
}

/// Expected calibration error of softmax(logits / t) over ECE_BINS equal-width bins of
/// the top-class confidence.
pub fn ece(scored: &Scored, t: f64) -> f64 {
    let (confidence, correct) = confidences(scored, t);
    expected_calibration_error(&confidence, &correct, ECE_BINS)
}

/// Fits the temperature on `held_out` (described by `fitted_on`) and records it in
/// `metrics` with the NLL there and the NLL and ECE on `test`, each before (T = 1,
/// `..._uncalibrated`) and after: `temperature`, `validation_nll[_uncalibrated]`,
/// `test_nll[_uncalibrated]`, `test_ece[_uncalibrated]`; and, calibrated, the share
/// of `test` below DEFAULT_MIN_CONFIDENCE and the accuracy below and above it
/// (`test_low_confidence_share`, `test_low_confidence_accuracy`,
/// `test_confident_accuracy`).
pub fn calibrate(
    held_out: &Scored,
    test: &Scored,
    fitted_on: String,
    metrics: &mut BTreeMap<String, f64>,
) -> Calibration {
    let temperature = fit_temperature(held_out);
    let calibration = Calibration {
        temperature,
        fitted_on,
        nll_uncalibrated: nll(held_out, 1.0),
        nll: nll(held_out, temperature),
    };
    let mut put = |key: &str, value: f64| metrics.insert(key.to_string(), value);
    put("temperature", temperature);
    put("validation_nll_uncalibrated", calibration.nll_uncalibrated);
    put("validation_nll", calibration.nll);
    put("test_nll_uncalibrated", nll(test, 1.0));
    put("test_nll", nll(test, temperature));
    put("test_ece_uncalibrated", ece(test, 1.0));
    put("test_ece", ece(test, temperature));
    let (share, low, rest) = split_at_confidence(test, temperature, DEFAULT_MIN_CONFIDENCE);
    put("test_low_confidence_share", share);
    put("test_low_confidence_accuracy", low);
    put("test_confident_accuracy", rest);
    calibration
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Labels drawn from softmax(z) for random z, shown as logits `scale` * z: a model
    /// whose scores are right at temperature `scale`.
    fn drawn(scale: f32, n: usize, seed: u64) -> Scored {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let z: [f32; 3] = std::array::from_fn(|_| rng.random_range(-2.0f32..2.0));
            let p = softmax(&z, 1.0);
            let u: f64 = rng.random();
            let label = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            logits.push(z.map(|x| x * scale));
            labels.push(label);
        }
        Scored { logits, labels }
    }

    #[test]
    fn over_confident_logits_get_a_temperature_above_one_and_a_lower_nll() {
        let scored = drawn(3.0, 6000, 1);
        let t = fit_temperature(&scored);
        assert!((2.6..3.4).contains(&t), "T = {t}");
        assert!(nll(&scored, t) < nll(&scored, 1.0) - 0.1);
        assert!(ece(&scored, t) < ece(&scored, 1.0) / 2.0);
        // The minimum: a little either side is worse.
        assert!(nll(&scored, t) <= nll(&scored, t * 1.05));
        assert!(nll(&scored, t) <= nll(&scored, t / 1.05));
    }

    #[test]
    fn timid_logits_get_a_temperature_below_one() {
        let scored = drawn(0.4, 6000, 2);
        let t = fit_temperature(&scored);
        assert!((0.3..0.5).contains(&t), "T = {t}");
        assert!(nll(&scored, t) < nll(&scored, 1.0));
    }

    #[test]
    fn nll_and_softmax_by_hand() {
        // Logits (ln 1, ln 2, ln 1): softmax (1/4, 1/2, 1/4); at T = 2 the
        // (1, sqrt 2, 1) / (2 + sqrt 2).
        let z = [0.0f32, 2f32.ln(), 0.0];
        let p = softmax(&z, 1.0);
        assert!((p[1] - 0.5).abs() < 1e-6 && (p[0] - 0.25).abs() < 1e-6);
        let q = softmax(&z, 2.0);
        assert!((q[1] - 2f64.sqrt() / (2.0 + 2f64.sqrt())).abs() < 1e-6);
        let scored = Scored {
            logits: vec![z, z],
            labels: vec![1, 0],
        };
        let want = (-(0.5f64.ln()) - 0.25f64.ln()) / 2.0;
        assert!((nll(&scored, 1.0) - want).abs() < 1e-6);
    }

    #[test]
    fn the_split_at_a_confidence_counts_by_hand() {
        // Two unsure answers (one right) and two sure ones (one right).
        let scored = Scored {
            logits: vec![
                [0.0, 0.0, 0.0], // 1/3 each: low, top class 0, right
                [0.0, 0.1, 0.0], // ~0.36: low, top class 1, wrong
                [5.0, 0.0, 0.0], // ~0.99: confident, right
                [0.0, 0.0, 5.0], // ~0.99: confident, wrong
            ],
            labels: vec![0, 2, 0, 1],
        };
        let (share, low, rest) = split_at_confidence(&scored, 1.0, 0.5);
        assert_eq!((share, low, rest), (0.5, 0.5, 0.5));
        // A high temperature makes every answer unsure.
        let (share, _, rest) = split_at_confidence(&scored, 20.0, 0.5);
        assert_eq!((share, rest), (1.0, 0.0));
    }

    #[test]
    fn no_examples_leave_it_uncalibrated() {
        let empty = Scored {
            logits: Vec::new(),
            labels: Vec::new(),
        };
        assert_eq!(fit_temperature(&empty), 1.0);
        let mut metrics = BTreeMap::new();
        let c = calibrate(&empty, &empty, "nothing".into(), &mut metrics);
        assert_eq!(c.temperature, 1.0);
        assert_eq!(metrics["test_ece"], 0.0);
    }

    #[test]
    fn calibrate_records_before_and_after() {
        let (held_out, test) = (drawn(2.0, 3000, 3), drawn(2.0, 3000, 4));
        let mut metrics = BTreeMap::new();
        let c = calibrate(&held_out, &test, "held out".into(), &mut metrics);
        assert_eq!(metrics["temperature"], c.temperature);
        assert!(c.nll < c.nll_uncalibrated);
        assert!(metrics["test_ece"] < metrics["test_ece_uncalibrated"]);
        assert!(metrics["test_nll"] < metrics["test_nll_uncalibrated"]);
    }
}
