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
        add_bias(&self.linear(x, stride, padding)?, &self.bias)
    }

    /// The convolution without its bias.
    pub fn linear(&self, x: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
        let x = pad_spatial(x, self.kernel, stride, padding)?;
        conv_im2col(&x, &self.weight, stride)
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// A valid convolution as one matrix product: (out, in*k*k) x (in*k*k, pixels). The
/// columns are laid out so that the product is already NCHW; candle's own im2col
/// path took 2-3x as long on the detector's first layer here.
fn conv_im2col(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (out_c, _, k, _) = weight.dims4()?;
    let (oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let mut cols = vec![0f32; b * c * k * k * oh * ow];
    for (plane, src) in input.chunks_exact(h * w).enumerate() {
        let (img, ch) = (plane / c, plane % c);
        for ky in 0..k {
            for kx in 0..k {
                let row = ((img * c + ch) * k + ky) * k + kx;
                let dst = &mut cols[row * oh * ow..][..oh * ow];
                for oy in 0..oh {
                    let line = &src[(oy * stride + ky) * w + kx..];
                    for (ox, d) in dst[oy * ow..][..ow].iter_mut().enumerate() {
                        *d = line[ox * stride];
                    }
                }
            }
        }
    }
    let cols = Tensor::from_vec(cols, (b, c * k * k, oh * ow), x.device())?;
    weight
        .reshape((out_c, c * k * k))?
        .broadcast_matmul(&cols)?
        .reshape((b, out_c, oh, ow))
}

/// TF's `separableConv2d` + bias: a 3x3 depthwise filter per channel, then a 1x1
/// pointwise mix.
pub struct SeparableConv {
    /// (channels, 3, 3)
    depthwise: Tensor,
    /// (out, in)
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
        let pointwise = w.get(&format!("{prefix}/pointwise_filter"))?;
        let (_, _, c_in, c_out) = pointwise.dims4()?;
        Ok(Self {
            depthwise: depthwise.squeeze(3)?.permute((2, 0, 1))?.contiguous()?,
            pointwise: pointwise.reshape((c_in, c_out))?.t()?.contiguous()?,
            bias: w.get(&format!("{prefix}/bias"))?.clone(),
        })
    }

    pub fn forward(&self, x: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
        add_bias(&self.linear(x, stride, padding)?, &self.bias)
    }

    /// The convolution without its bias.
    pub fn linear(&self, x: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
        let x = depthwise_3x3(x, &self.depthwise, stride, padding)?;
        // A 1x1 convolution is a matrix product over the channels.
        let (b, c, h, w) = x.dims4()?;
        self.pointwise
            .broadcast_matmul(&x.reshape((b, c, h * w))?)?
            .reshape((b, (), h, w))
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// A 3x3 depthwise convolution (one filter per channel) written as a loop: candle runs
/// a grouped convolution as one convolution per channel, which is far slower.
fn depthwise_3x3(x: &Tensor, filters: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (top, bottom) = pads(h, 3, stride, padding);
    let (left, right) = pads(w, 3, stride, padding);
    let oh = (h + top + bottom - 3) / stride + 1;
    let ow = (w + left + right - 3) / stride + 1;
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let filters = filters.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; b * c * oh * ow];
    for (plane, (src, dst)) in input
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(oh * ow))
        .enumerate()
    {
        let k = &filters[(plane % c) * 9..][..9];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0f32;
                for ky in 0..3 {
                    // Row in the unpadded input; padding rows contribute zero.
                    let Some(y) = (oy * stride + ky).checked_sub(top).filter(|y| *y < h) else {
                        continue;
                    };
                    for kx in 0..3 {
                        if let Some(xx) = (ox * stride + kx).checked_sub(left).filter(|x| *x < w) {
                            acc += src[y * w + xx] * k[ky * 3 + kx];
                        }
                    }
                }
                dst[oy * ow + ox] = acc;
            }
        }
    }
    Tensor::from_vec(out, (b, c, oh, ow), x.device())
}

/// TF's `maxPool` with a 2x2 window and "same" padding (which here only ever pads
/// after), then the bias and leaky ReLU. Adding a bias and the leaky ReLU never
/// reorder values, so taking the maximum first gives the same result on a quarter of
/// the values.
pub fn pool_bias_leaky(x: &Tensor, bias: &Tensor, stride: usize) -> Result<Tensor> {
    leaky(&add_bias(&max_pool_2x2_same(x, stride)?, bias)?)
}

fn max_pool_2x2_same(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; b * c * oh * ow];
    for (src, dst) in input.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (y0, y1) = (oy * stride, (oy * stride + 1).min(h - 1));
            for ox in 0..ow {
                let (x0, x1) = (ox * stride, (ox * stride + 1).min(w - 1));
                dst[oy * ow + ox] = src[y0 * w + x0]
                    .max(src[y0 * w + x1])
                    .max(src[y1 * w + x0])
                    .max(src[y1 * w + x1]);
            }
        }
    }
    Tensor::from_vec(out, (b, c, oh, ow), x.device())
}

/// YOLO's leaky ReLU; TF.js writes it relu(x - 0.1x) + 0.1x, which is max(x, 0.1x).
fn leaky(x: &Tensor) -> Result<Tensor> {
    x.maximum(&(x * 0.1)?)
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
    fn depthwise_matches_a_grouped_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 7, 6), &dev)?;
        let k = Tensor::randn(0f32, 1., (3, 3, 3), &dev)?;
        for (stride, padding) in [(1, Padding::Same), (2, Padding::Same), (1, Padding::Valid)] {
            let ours = depthwise_3x3(&x, &k, stride, padding)?;
            let padded = pad_spatial(&x, 3, stride, padding)?;
            let grouped = padded.conv2d(&k.unsqueeze(1)?, 0, stride, 1, 3)?;
            assert_eq!(ours.dims(), grouped.dims());
            let diff = (ours - grouped)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "stride {stride} {padding:?}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn im2col_matches_candle_conv() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 9, 8), &dev)?;
        let k = Tensor::randn(0f32, 1., (4, 3, 3, 3), &dev)?;
        for stride in [1, 2] {
            let ours = conv_im2col(&x, &k, stride)?;
            let theirs = x.conv2d(&k, 0, stride, 1, 1)?;
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "stride {stride}: {diff}");
        }
        Ok(())
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
