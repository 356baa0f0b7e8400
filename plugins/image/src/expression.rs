//! face-api's FaceExpressionNet: four densely connected blocks of separable
//! convolutions over a 112x112 face, a 256-wide bottleneck, and 7 expression logits.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::ops::softmax_last_dim;
use image::RgbImage;

use crate::{
    layers::{Conv, Padding, SeparableConv, global_avg_pool},
    preprocess::square_input,
    weights::Weights,
};

pub const MODEL: &str = "face_expression_model";
const INPUT_SIZE: usize = 112;
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
/// The network's class order.
pub const LABELS: [&str; 7] = [
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
];

/// The first layer of block 0 is a full convolution; the others are separable.
enum First {
    Conv(Conv),
    Separable(SeparableConv),
}

struct DenseBlock {
    first: First,
    rest: [SeparableConv; 3],
}

impl DenseBlock {
    fn load(w: &Weights, prefix: &str, first_is_conv: bool) -> anyhow::Result<Self> {
        let first = if first_is_conv {
            First::Conv(Conv::load(w, &format!("{prefix}/conv0"))?)
        } else {
            First::Separable(SeparableConv::load(w, &format!("{prefix}/conv0"))?)
        };
        let sep = |i: usize| SeparableConv::load(w, &format!("{prefix}/conv{i}"));
        Ok(Self {
            first,
            rest: [sep(1)?, sep(2)?, sep(3)?],
        })
    }

    /// Each layer sees the ReLU of the sum of all the outputs before it.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out1 = match &self.first {
            First::Conv(c) => c.forward(x, 2, Padding::Same)?,
            First::Separable(s) => s.forward(x, 2, Padding::Same)?,
        }
        .relu()?;
        let mut sum = out1.clone();
        let mut input = out1;
        for conv in &self.rest {
            sum = (sum + conv.forward(&input, 1, Padding::Same)?)?;
            input = sum.relu()?;
        }
        Ok(input)
    }
}

/// One face's expression: probabilities in [`LABELS`] order and the bottleneck.
pub struct Expression {
    pub probabilities: Vec<f32>,
    pub features: Vec<f32>,
}

pub struct ExpressionNet {
    blocks: Vec<DenseBlock>,
    fc_weight: Tensor,
    fc_bias: Tensor,
    device: Device,
    pub sha256: String,
}

impl ExpressionNet {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let w = Weights::load(dir, MODEL, device)?;
        Ok(Self {
            blocks: (0..4)
                .map(|i| DenseBlock::load(&w, &format!("dense{i}"), i == 0))
                .collect::<anyhow::Result<_>>()?,
            fc_weight: w.get("fc/weights")?.clone(),
            fc_bias: w.get("fc/bias")?.clone(),
            device: device.clone(),
            sha256: w.sha256,
        })
    }

    /// Expressions of face crops, in one batch.
    pub fn classify(&self, faces: &[RgbImage]) -> anyhow::Result<Vec<Expression>> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let inputs = faces
            .iter()
            .map(|f| square_input(f, INPUT_SIZE, true, MEAN_RGB, &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut x = Tensor::cat(&inputs, 0)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let features = global_avg_pool(&x)?;
        let logits = features
            .matmul(&self.fc_weight)?
            .broadcast_add(&self.fc_bias)?;
        let probabilities = softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        Ok(features
            .to_vec2::<f32>()?
            .into_iter()
            .zip(probabilities)
            .map(|(features, probabilities)| Expression {
                probabilities,
                features,
            })
            .collect())
    }
}
