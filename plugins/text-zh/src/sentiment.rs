//! The sentiment model: three-class logistic regression over hashed sparse features of
//! a text (jieba words and word pairs, Han character pairs, words in a negation's
//! scope, and the lexicon's signed sums), trained by `empathy train` on Chinese
//! reviews and news.

use std::path::Path;

use anyhow::{Context, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

/// Hashed feature slots: 2^18 keeps collisions rare for a ~35k-review vocabulary
/// (about 100k distinct features) at 1 MiB of weights.
pub const BUCKETS: usize = 1 << 18;
/// The model's file in its directory.
pub const MODEL_FILE: &str = "model.safetensors";

/// A sparse feature vector: slot indices (sorted, distinct) and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseFeatures {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// FNV-1a over `kind` and `key`: stable across platforms and Rust versions, which
/// std's hasher does not promise, so a saved model keeps meaning the same slots.
pub fn slot(kind: &str, key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % BUCKETS as u64) as u32
}

impl SparseFeatures {
    /// Binary features `present` (any order, repeats allowed), scaled to unit length so
    /// that a long review does not outweigh a short one; then `real` ones added as they
    /// are.
    pub fn from_parts(mut present: Vec<u32>, real: &[(u32, f32)]) -> SparseFeatures {
        present.sort_unstable();
        present.dedup();
        let scale = 1.0 / (present.len().max(1) as f32).sqrt();
        let mut pairs: Vec<(u32, f32)> = present.into_iter().map(|i| (i, scale)).collect();
        pairs.extend_from_slice(real);
        pairs.sort_by_key(|(i, _)| *i);
        let mut out = SparseFeatures::default();
        for (i, v) in pairs {
            if out.indices.last() == Some(&i) {
                if let Some(last) = out.values.last_mut() {
                    *last += v;
                }
            } else {
                out.indices.push(i);
                out.values.push(v);
            }
        }
        out
    }
}

/// Classes, in SENTIMENT_LABELS order (negative, neutral, positive).
pub const CLASSES: usize = 3;

/// Multinomial logistic regression: p = softmax(bias + W x), one row of `weights` per
/// class (class-major: class k's slot i at k * BUCKETS + i).
#[derive(Debug, Clone, PartialEq)]
pub struct SentimentModel {
    pub weights: Vec<f32>,
    pub bias: [f32; CLASSES],
}

impl SentimentModel {
    pub fn zeros() -> SentimentModel {
        SentimentModel {
            weights: vec![0.0; CLASSES * BUCKETS],
            bias: [0.0; CLASSES],
        }
    }

    pub fn logits(&self, x: &SparseFeatures) -> [f32; CLASSES] {
        let mut z = self.bias;
        for (k, zk) in z.iter_mut().enumerate() {
            let row = &self.weights[k * BUCKETS..(k + 1) * BUCKETS];
            *zk += x
                .indices
                .iter()
                .zip(&x.values)
                .map(|(&i, v)| row[i as usize] * v)
                .sum::<f32>();
        }
        z
    }

    /// Class probabilities, SENTIMENT_LABELS order.
    pub fn probabilities(&self, x: &SparseFeatures) -> [f32; CLASSES] {
        softmax(self.logits(x))
    }

    /// How much one feature slot leans positive: its positive weight minus its
    /// negative one.
    pub fn lean(&self, slot: u32) -> f32 {
        let i = slot as usize;
        self.weights[2 * BUCKETS + i] - self.weights[i]
    }

    /// Writes `<dir>/model.safetensors`; returns its version (first 12 hex digits of
    /// its sha256).
    pub fn save(&self, dir: &Path) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (w, b) = (bytes(&self.weights), bytes(&self.bias));
        let tensors = [
            (
                "weights",
                TensorView::new(Dtype::F32, vec![CLASSES, BUCKETS], &w)?,
            ),
            ("bias", TensorView::new(Dtype::F32, vec![CLASSES], &b)?),
        ];
        let data = safetensors::serialize(tensors, None)?;
        let path = dir.join(MODEL_FILE);
        std::fs::write(&path, &data).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(version_of(&data))
    }

    /// Reads `<dir>/model.safetensors`; returns the model and its version.
    pub fn load(dir: &Path) -> anyhow::Result<(SentimentModel, String)> {
        let path = dir.join(MODEL_FILE);
        let data = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the Chinese sentiment model {}: run `empathy train`",
                path.display()
            )
        })?;
        let tensors = SafeTensors::deserialize(&data)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        let read = |name: &str, shape: &[usize]| -> anyhow::Result<Vec<f32>> {
            let t = tensors
                .tensor(name)
                .with_context(|| format!("{} has no tensor {name:?}", path.display()))?;
            ensure!(
                t.dtype() == Dtype::F32 && t.shape() == shape,
                "{}: {name:?} is {:?} {:?}, expected F32 {shape:?}",
                path.display(),
                t.dtype(),
                t.shape()
            );
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let weights = read("weights", &[CLASSES, BUCKETS])?;
        let bias = read("bias", &[CLASSES])?;
        let bias = [bias[0], bias[1], bias[2]];
        Ok((SentimentModel { weights, bias }, version_of(&data)))
    }
}

pub fn softmax(z: [f32; CLASSES]) -> [f32; CLASSES] {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e = z.map(|v| (v - max).exp());
    let sum: f32 = e.iter().sum();
    e.map(|v| v / sum)
}

fn version_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))[..12].to_string()
}

/// The lexicon baseline's sentiment, SENTIMENT_LABELS order, from p(positive) and the
/// lexicon's evidence (the summed |polarity| of its words in the text): neutral means
/// no evidence. Neutral takes (1 - c)^2 / (1 + 2 x evidence), c = |2p - 1| the
/// model's certainty, and the rest goes to the side p leans to: without a polar word
/// an unsure reading (p within about 0.35..0.65) is neutral; with one it never is.
pub fn three_way(p_positive: f32, evidence: f32) -> [f32; 3] {
    let p = p_positive.clamp(0.0, 1.0);
    let certainty = (2.0 * p - 1.0).abs();
    let neutral = (1.0 - certainty).powi(2) / (1.0 + 2.0 * evidence.max(0.0));
    let polar = 1.0 - neutral;
    if p >= 0.5 {
        [0.0, neutral, polar]
    } else {
        [polar, neutral, 0.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_spread() {
        // Pinned: a saved model's slots must mean the same words in every build.
        assert_eq!(slot("w", "好"), slot("w", "好"));
        assert_ne!(slot("w", "好"), slot("n", "好"));
        assert_eq!(
            slot("", ""),
            (0xaf63_bd4c_8601_b7df_u64 % BUCKETS as u64) as u32
        );
    }

    #[test]
    fn features_are_unit_binary_plus_real() {
        let f = SparseFeatures::from_parts(vec![5, 3, 5, 9, 3], &[(9, 1.5), (1, -2.0)]);
        assert_eq!(f.indices, [1, 3, 5, 9]);
        let s = 1.0 / 3f32.sqrt();
        assert_eq!(f.values, [-2.0, s, s, s + 1.5]);
    }

    #[test]
    fn saves_and_loads_the_same_model() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("zh-sentiment-{}", std::process::id()));
        let mut model = SentimentModel::zeros();
        model.weights[BUCKETS + 7] = 0.25;
        model.bias = [-0.5, 0.0, 0.5];
        let version = model.save(&dir)?;
        let (loaded, again) = SentimentModel::load(&dir)?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!((loaded, again.as_str()), (model, version.as_str()));
        assert_eq!(version.len(), 12);
        assert!(SentimentModel::load(&dir).is_err_and(|e| e.to_string().contains("empathy train")));
        Ok(())
    }

    #[test]
    fn probabilities_sum_to_one_and_follow_the_logits() {
        let mut model = SentimentModel::zeros();
        model.weights[2 * BUCKETS + 3] = 2.0;
        let x = SparseFeatures {
            indices: vec![3],
            values: vec![1.0],
        };
        let p = model.probabilities(&x);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[2] > p[0]);
        assert_eq!(model.lean(3), 2.0);
    }

    #[test]
    fn three_way_is_neutral_without_evidence() {
        assert_eq!(three_way(0.5, 0.0), [0.0, 1.0, 0.0]);
        let sure = three_way(0.95, 0.0);
        assert!(sure[2] > 0.95 && (sure.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let lean = three_way(0.3, 0.0);
        assert!(lean[0] > lean[1] && lean[2] == 0.0);
        let unsure = three_way(0.45, 0.0);
        assert!(unsure[1] > unsure[0], "{unsure:?}");
        // A polar word: the side the model leans to, however slightly.
        let worded = three_way(0.45, 1.0);
        assert!(worded[0] > worded[1], "{worded:?}");
    }
}
