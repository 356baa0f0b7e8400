//! face-api's Tiny Face Detector: a Tiny-YOLOv2 with depthwise-separable convolutions,
//! five anchors, one class. Returns boxes relative to the image, after NMS.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::{
    layers::{Conv, Padding, SeparableConv, pool_bias_leaky},
    preprocess::square_input,
    weights::Weights,
};

pub const MODEL: &str = "tiny_face_detector_model";
const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
/// Anchor (width, height) in grid cells.
const ANCHORS: [(f32, f32); 5] = [
    (1.603_231, 2.094_468),
    (6.041_143, 7.080_126),
    (2.882_459, 3.518_061),
    (4.266_906, 5.178_857),
    (9.041_765, 10.663_08),
];
const IOU_THRESHOLD: f32 = 0.4;

/// A detection in image-relative coordinates (0..1 of width and height).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

impl Detection {
    fn iou(&self, other: &Self) -> f32 {
        let w = ((self.x + self.width).min(other.x + other.width) - self.x.max(other.x)).max(0.0);
        let h = ((self.y + self.height).min(other.y + other.height) - self.y.max(other.y)).max(0.0);
        let inter = w * h;
        inter / (self.width * self.height + other.width * other.height - inter)
    }
}

pub struct FaceDetector {
    conv0: Conv,
    separable: Vec<SeparableConv>,
    conv8: Conv,
    device: Device,
    pub sha256: String,
}

impl FaceDetector {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let w = Weights::load(dir, MODEL, device)?;
        Ok(Self {
            conv0: Conv::load(&w, "conv0")?,
            separable: (1..=5)
                .map(|i| SeparableConv::load(&w, &format!("conv{i}")))
                .collect::<anyhow::Result<_>>()?,
            conv8: Conv::load(&w, "conv8")?,
            device: device.clone(),
            sha256: w.sha256,
        })
    }

    /// The raw (1, 25, cells, cells) grid for an image at `input_size` (a multiple of 32).
    pub fn grid(&self, image: &RgbImage, input_size: usize) -> candle_core::Result<Tensor> {
        let x = square_input(image, input_size, false, MEAN_RGB, &self.device)?;
        let x = self.conv0.linear(&x, 1, Padding::Valid)?;
        let mut x = pool_bias_leaky(&x, self.conv0.bias(), 2)?;
        for (i, conv) in self.separable.iter().enumerate() {
            let stride = if i < 4 { 2 } else { 1 };
            x = pool_bias_leaky(&conv.linear(&x, 1, Padding::Same)?, conv.bias(), stride)?;
        }
        self.conv8.forward(&x, 1, Padding::Valid)
    }

    /// Faces scoring above `min_score`, after non-maximum suppression, best first.
    pub fn detect(
        &self,
        image: &RgbImage,
        input_size: usize,
        min_score: f32,
    ) -> anyhow::Result<Vec<Detection>> {
        let grid = self.grid(image, input_size)?;
        let (_, channels, cells, _) = grid.dims4()?;
        anyhow::ensure!(
            channels == 5 * ANCHORS.len(),
            "detector output has {channels} channels"
        );
        let values = grid.flatten_all()?.to_vec1::<f32>()?;
        let at = |ch: usize, row: usize, col: usize| values[(ch * cells + row) * cells + col];
        // The padded square holds the image in its top-left corner: map back to it.
        let (w, h) = (image.width() as f32, image.height() as f32);
        let scale = input_size as f32 / w.max(h);
        let correct_x = input_size as f32 / (w * scale).round();
        let correct_y = input_size as f32 / (h * scale).round();
        let n = cells as f32;
        let mut found = Vec::new();
        for row in 0..cells {
            for col in 0..cells {
                for (a, (aw, ah)) in ANCHORS.iter().enumerate() {
                    let score = sigmoid(at(a * 5 + 4, row, col));
                    if score <= min_score {
                        continue;
                    }
                    let cx = (col as f32 + sigmoid(at(a * 5, row, col))) / n * correct_x;
                    let cy = (row as f32 + sigmoid(at(a * 5 + 1, row, col))) / n * correct_y;
                    let width = at(a * 5 + 2, row, col).exp() * aw / n * correct_x;
                    let height = at(a * 5 + 3, row, col).exp() * ah / n * correct_y;
                    found.push(Detection {
                        x: cx - width / 2.0,
                        y: cy - height / 2.0,
                        width,
                        height,
                        score,
                    });
                }
            }
        }
        Ok(non_max_suppression(found, IOU_THRESHOLD))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Greedy NMS: keep the best box, drop those overlapping it by more than `threshold`.
fn non_max_suppression(mut boxes: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in boxes {
        if kept.iter().all(|k| k.iou(&candidate) <= threshold) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            x,
            y: 0.0,
            width: 1.0,
            height: 1.0,
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = non_max_suppression(vec![det(0.0, 0.6), det(0.1, 0.9), det(5.0, 0.7)], 0.4);
        assert_eq!(kept, [det(0.1, 0.9), det(5.0, 0.7)]);
    }
}
