//! MPNet's relative-position attention bias (T5's bucketing, as transformers'
//! `MPNetEncoder.relative_position_bucket` computes it): exact buckets for nearby tokens,
//! logarithmic ones out to 128 tokens, separate for tokens before and after.

use candle_core::{Result, Tensor};

/// Beyond this distance every token falls in the last bucket.
const MAX_DISTANCE: f32 = 128.0;

/// The learned bias, (buckets, heads).
pub struct RelativeBias {
    weight: Vec<Vec<f32>>,
    heads: usize,
}

impl RelativeBias {
    pub fn new(weight: &Tensor) -> Result<Self> {
        let weight = weight.to_vec2::<f32>()?;
        let heads = weight.first().map_or(0, Vec::len);
        Ok(Self { weight, heads })
    }

    /// (heads, len, len) row-major: what query i adds to its score for key j.
    pub fn for_length(&self, len: usize) -> Vec<f32> {
        let buckets = self.weight.len();
        let mut bias = vec![0f32; self.heads * len * len];
        for i in 0..len {
            for j in 0..len {
                let row = &self.weight[bucket(j as i64 - i as i64, buckets)];
                for (head, &b) in row.iter().enumerate() {
                    bias[(head * len + i) * len + j] = b;
                }
            }
        }
        bias
    }
}

/// The bucket of key position minus query position `relative`.
fn bucket(relative: i64, buckets: usize) -> usize {
    let half = buckets / 2;
    let after = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let exact = half / 2;
    if distance < exact {
        return after + distance;
    }
    let log_ratio = (distance as f32 / exact as f32).ln() / (MAX_DISTANCE / exact as f32).ln();
    let far = exact + (log_ratio * (half - exact) as f32) as usize;
    after + far.min(half - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_transformers() {
        // Values from transformers' MPNetEncoder.relative_position_bucket, 32 buckets.
        let expected = [
            (0, 0),
            (-1, 1),
            (-7, 7),
            (-8, 8),
            (-12, 9),
            (-16, 10),
            (-127, 15),
            (-500, 15),
            (1, 17),
            (7, 23),
            (8, 24),
            (20, 26),
            (200, 31),
        ];
        for (relative, b) in expected {
            assert_eq!(bucket(relative, 32), b, "relative position {relative}");
        }
    }
}
