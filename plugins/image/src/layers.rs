//! The TF.js layers the face-api networks use, on candle (NCHW), with TensorFlow's
//! padding rules: "same" pads `total = (out - 1) * stride + k - in`, the smaller half
//! before, so a stride-2 layer on an even size pads only after.

use candle_core::{D, Result, Tensor};

use crate::weights::Weights;

/// TensorFlow's padding modes.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Padding {
    Same,
    Valid,
}

/// (before, after) padding of one spatial dimension.
fn pads(size: usize, kernel: usize, stride: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = size.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(size);
            (total / 2, total - total / 2)
        }
    }
}

fn pad_spatial(x: &Tensor, kernel: usize, stride: usize, padding: Padding) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (top, bottom) = pads(h, kernel, stride, padding);
    let (left, right) = pads(w, kernel, stride, padding);
    x.pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)
}

fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)
}

/// A full convolution with bias (TF filters: height, width, in, out).
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
}

impl Conv {
    pub fn load(w: &Weights, prefix: &str) -> anyhow::Result<Self> {
        let filters = w.get(&format!("{prefix}/filters"))?;
        Ok(Self {
            kernel: filters.dim(0)?,
            weight: filters.permute((3, 2, 0, 1))?.contiguous()?,
            bias: w.get(&format!("{prefix}/bias"))?.clone(),
        })
    }

    pub fn forward(&self, x: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
        let x = pad_spatial(x, self.kernel, stride, padding)?;
        add_bias(&x.conv2d(&self.weight, 0, stride, 1, 1)?, &self.bias)
    }
}

/// TF's `separableConv2d` + bias: a 3x3 depthwise filter per channel, then a 1x1
/// pointwise mix.
pub struct SeparableConv {
    /// (channels, 3, 3)
    depthwise: Tensor,
    pointwise: Tensor,
    bias: Tensor,
}

impl SeparableConv {
    pub fn load(w: &Weights, prefix: &str) -> anyhow::Result<Self> {
        let depthwise = w.get(&format!("{prefix}/depthwise_filter"))?;
        let (kh, kw, _, multiplier) = depthwise.dims4()?;
        if (kh, kw, multiplier) != (3, 3, 1) {
            anyhow::bail!(
                "{prefix}: expected a 3x3 depthwise filter, got {:?}",
                depthwise.dims()
            );
        }
        Ok(Self {
            depthwise: depthwise.squeeze(3)?.permute((2, 0, 1))?.contiguous()?,
            pointwise: w
                .get(&format!("{prefix}/pointwise_filter"))?
                .permute((3, 2, 0, 1))?
                .contiguous()?,
            bias: w.get(&format!("{prefix}/bias"))?.clone(),
        })
    }

    pub fn forward(&self, x: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
        let x = self.depthwise(&pad_spatial(x, 3, stride, padding)?, stride)?;
        add_bias(&x.conv2d(&self.pointwise, 0, 1, 1, 1)?, &self.bias)
    }

    /// A valid 3x3 depthwise convolution as nine shifted multiply-adds: candle runs a
    /// grouped convolution as one convolution per channel, which is far slower.
    fn depthwise(&self, x: &Tensor, stride: usize) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        let (oh, ow) = (h - 2, w - 2);
        let mut sum: Option<Tensor> = None;
        for ky in 0..3 {
            for kx in 0..3 {
                let tap = self.depthwise.narrow(1, ky, 1)?.narrow(2, kx, 1)?;
                let shifted = x.narrow(2, ky, oh)?.narrow(3, kx, ow)?;
                let term = shifted.broadcast_mul(&tap.reshape((1, c, 1, 1))?)?;
                sum = Some(match sum {
                    Some(s) => (s + term)?,
                    None => term,
                });
            }
        }
        let out = sum.ok_or_else(|| candle_core::Error::Msg("empty kernel".into()))?;
        if stride == 1 {
            return Ok(out);
        }
        let rows = every(oh, stride, x.device())?;
        let cols = every(ow, stride, x.device())?;
        out.index_select(&rows, 2)?.index_select(&cols, 3)
    }
}

/// Indices 0, stride, 2*stride, ... below `n`.
fn every(n: usize, stride: usize, device: &candle_core::Device) -> Result<Tensor> {
    let idx: Vec<u32> = (0..n).step_by(stride).map(|i| i as u32).collect();
    Tensor::from_vec(idx, n.div_ceil(stride), device)
}

/// TF's `maxPool` with a 2x2 window and "same" padding. Edge padding repeats the last
/// row and column, which leaves every maximum as TF's ignore-the-padding rule does.
pub fn max_pool_2x2_same(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (_, bottom) = pads(h, 2, stride, Padding::Same);
    let (_, right) = pads(w, 2, stride, Padding::Same);
    let mut x = x.clone();
    if bottom > 0 {
        x = Tensor::cat(&[&x, &x.narrow(2, h - 1, 1)?.repeat((1, 1, bottom, 1))?], 2)?;
    }
    if right > 0 {
        x = Tensor::cat(&[&x, &x.narrow(3, w - 1, 1)?.repeat((1, 1, 1, right))?], 3)?;
    }
    x.max_pool2d_with_stride(2, stride)
}

/// YOLO's leaky ReLU, written as TF.js does: relu(x - 0.1x) + 0.1x.
pub fn leaky(x: &Tensor) -> Result<Tensor> {
    let min = (x * 0.1)?;
    (x - &min)?.relu()? + min
}

/// Mean over the spatial dimensions (TF's 7x7 valid average pool on a 7x7 map).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(pads(112, 3, 2, Padding::Same), (0, 1));
        assert_eq!(pads(56, 3, 1, Padding::Same), (1, 1));
        assert_eq!(pads(207, 2, 2, Padding::Same), (0, 1));
        assert_eq!(pads(13, 2, 1, Padding::Same), (0, 1));
        assert_eq!(pads(414, 2, 2, Padding::Same), (0, 0));
    }

    #[test]
    fn max_pool_keeps_edge_maxima() -> Result<()> {
        let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
        let y = max_pool_2x2_same(&x, 2)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [4., 5., 7., 8.]);
        let y = max_pool_2x2_same(&x, 1)?;
        assert_eq!(y.dims(), [1, 1, 3, 3]);
        Ok(())
    }
}
