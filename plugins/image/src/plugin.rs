//! The image modality as an empathy plugin: decode, find faces, read their expressions.

use std::path::{Path, PathBuf};

use candle_core::Device;
use empathy_plugin_api::{Plugin, PluginError, Settings, check_request};
use empathy_proto::{
    EMOTION_LABELS,
    modality::IMAGE,
    v1::{
        EncodeOutput, EncodeRequest, EncodeResponse, Face, LabelScore, ModalityInfo, ModelRef,
        PluginConfig, encode_input::Payload,
    },
};
use image::{RgbImage, imageops};

use crate::{
    decode::{self, Refused, decode},
    detector::{Detection, FaceDetector},
    expression::{self, Expression, ExpressionNet},
};

pub const MODEL_ID: &str = "vladmandic/face-api@1.7.15 tiny_face_detector + face_expression";
/// Where the weights live under `PluginConfig.assets_dir`.
pub const MODEL_SUBDIR: &str = "image/face-api";
/// Length of the image embedding: the expression network's bottleneck.
pub const EMBEDDING_DIM: usize = 256;

const SETTINGS: [&str; 7] = [
    "model_dir",
    "max_batch",
    "max_input_bytes",
    "max_pixels",
    "input_size",
    "min_score",
    "max_faces",
];

#[derive(Debug, Clone)]
struct Limits {
    max_batch: usize,
    max_input_bytes: usize,
    max_pixels: u64,
    input_size: usize,
    min_score: f32,
    max_faces: usize,
}

impl Limits {
    fn from_settings(s: &Settings) -> Result<Self, PluginError> {
        let limits = Self {
            max_batch: s.positive("max_batch", 16)?,
            max_input_bytes: s.positive("max_input_bytes", 20 << 20)?,
            max_pixels: s.positive("max_pixels", decode::MAX_PIXELS)?,
            input_size: s.positive("input_size", 416)?,
            min_score: s.positive("min_score", 0.5)?,
            max_faces: s.positive("max_faces", 20)?,
        };
        if !limits.input_size.is_multiple_of(32) || limits.input_size > 1024 {
            return Err(PluginError::invalid_input(format!(
                "setting input_size={}: expected a multiple of 32 up to 1024",
                limits.input_size
            )));
        }
        if limits.max_pixels > decode::MAX_PIXELS {
            return Err(PluginError::invalid_input(format!(
                "setting max_pixels={}: the cap is {} pixels (16 MP)",
                limits.max_pixels,
                decode::MAX_PIXELS
            )));
        }
        if limits.min_score >= 1.0 {
            return Err(PluginError::invalid_input(format!(
                "setting min_score={}: expected a score below 1",
                limits.min_score
            )));
        }
        Ok(limits)
    }

    /// The bytes of each input of a valid request, or an error naming the bad one.
    fn validate<'r>(&self, request: &'r EncodeRequest) -> Result<Vec<&'r [u8]>, PluginError> {
        check_request(request, IMAGE, self.max_batch, "images")?;
        request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| match &input.payload {
                Some(Payload::Data(bytes)) if bytes.len() > self.max_input_bytes => {
                    Err(PluginError::invalid_input(format!(
                        "input {i}: the image is {} bytes, over the limit of {} bytes",
                        bytes.len(),
                        self.max_input_bytes
                    )))
                }
                Some(Payload::Data(bytes)) => Ok(bytes.as_ref()),
                Some(Payload::Text(_)) => Err(PluginError::invalid_input(format!(
                    "input {i}: expected image bytes, got text"
                ))),
                None => Err(PluginError::invalid_input(format!(
                    "input {i}: no image given"
                ))),
            })
            .collect()
    }
}

/// The `image` modality: faces and their expressions.
pub struct ImagePlugin {
    detector: FaceDetector,
    expressions: ExpressionNet,
    limits: Limits,
}

impl ImagePlugin {
    fn model_ref(&self) -> ModelRef {
        ModelRef {
            id: MODEL_ID.to_string(),
            version: format!(
                "{}+{}",
                &self.detector.sha256[..12],
                &self.expressions.sha256[..12]
            ),
        }
    }

    /// Every face in one image, largest first, with its expression.
    fn faces(&self, image: &RgbImage) -> anyhow::Result<Vec<(Face, Expression)>> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        let mut boxes: Vec<(Face, (u32, u32, u32, u32))> = self
            .detector
            .detect(image, self.limits.input_size, self.limits.min_score)?
            .iter()
            .filter_map(|d| clip(d, w, h))
            .collect();
        boxes.sort_by(|a, b| (b.0.width * b.0.height).total_cmp(&(a.0.width * a.0.height)));
        boxes.truncate(self.limits.max_faces);
        let crops: Vec<RgbImage> = boxes
            .iter()
            .map(|(_, (x, y, cw, ch))| imageops::crop_imm(image, *x, *y, *cw, *ch).to_image())
            .collect();
        let expressions = self.expressions.classify(&crops)?;
        Ok(boxes
            .into_iter()
            .zip(expressions)
            .map(|((mut face, _), expression)| {
                face.emotions = emotion_scores(&expression.probabilities);
                (face, expression)
            })
            .collect())
    }

    fn encode_one(&self, bytes: &[u8], index: usize) -> Result<EncodeOutput, PluginError> {
        let image = decode(bytes, self.limits.max_pixels)
            .map_err(|Refused(why)| PluginError::invalid_input(format!("input {index}: {why}")))?;
        let faces = self
            .faces(&image)
            .map_err(|e| PluginError::internal(format!("input {index}: {e:#}")))?;
        let embedding = faces
            .first()
            .map(|(_, e)| e.features.clone())
            .unwrap_or_default();
        let mut output = EncodeOutput {
            embedding,
            faces: faces.into_iter().map(|(f, _)| f).collect(),
            ..Default::default()
        };
        output
            .features
            .insert("faces".into(), output.faces.len() as f32);
        output.features.insert("width".into(), image.width() as f32);
        output
            .features
            .insert("height".into(), image.height() as f32);
        Ok(output)
    }
}

/// The box in pixels, clipped to the image, and the whole-pixel crop face-api takes.
fn clip(d: &Detection, w: f32, h: f32) -> Option<(Face, (u32, u32, u32, u32))> {
    let (x, y) = ((d.x * w).max(0.0), (d.y * h).max(0.0));
    let width = ((d.x + d.width) * w).min(w) - x;
    let height = ((d.y + d.height) * h).min(h) - y;
    let crop = (
        x.floor() as u32,
        y.floor() as u32,
        width.floor() as u32,
        height.floor() as u32,
    );
    (crop.2 > 0 && crop.3 > 0).then(|| {
        let face = Face {
            x,
            y,
            width,
            height,
            score: d.score,
            emotions: Vec::new(),
        };
        (face, crop)
    })
}

/// The network's seven classes under the service's emotion names and order.
fn emotion_scores(probabilities: &[f32]) -> Vec<LabelScore> {
    fn source(label: &str) -> &str {
        match label {
            "anger" => "angry",
            "disgust" => "disgusted",
            "fear" => "fearful",
            "joy" => "happy",
            "sadness" => "sad",
            "surprise" => "surprised",
            other => other,
        }
    }
    EMOTION_LABELS
        .iter()
        .map(|label| LabelScore {
            label: label.to_string(),
            score: expression::LABELS
                .iter()
                .position(|l| *l == source(label))
                .and_then(|i| probabilities.get(i).copied())
                .unwrap_or(0.0),
        })
        .collect()
}

impl Plugin for ImagePlugin {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new("image", &config.settings, &SETTINGS)?;
        let limits = Limits::from_settings(&settings)?;
        if !matches!(config.device.as_str(), "" | "cpu") {
            return Err(PluginError::unavailable(format!(
                "device {:?}: the image plugin runs on the CPU only",
                config.device
            )));
        }
        let dir = match settings.get("model_dir") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(&config.assets_dir).join(MODEL_SUBDIR),
        };
        let load = |what: &str, e: anyhow::Error| {
            PluginError::unavailable(format!(
                "cannot load the {what} from {} (run `empathy assets fetch`): {e:#}",
                dir.display()
            ))
        };
        let device = Device::Cpu;
        Ok(Self {
            detector: FaceDetector::load(&dir, &device).map_err(|e| load("face detector", e))?,
            expressions: ExpressionNet::load(&dir, &device)
                .map_err(|e| load("expression network", e))?,
            limits,
        })
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: IMAGE.to_string(),
            embedding_dim: EMBEDDING_DIM as u32,
            model: Some(self.model_ref()),
            max_batch: u32::try_from(self.limits.max_batch).unwrap_or(u32::MAX),
            max_input_size: self.limits.max_input_bytes as u64,
            plugin: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).to_string(),
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let inputs = self.limits.validate(&request)?;
        let outputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| self.encode_one(bytes, i))
            .collect::<Result<_, _>>()?;
        Ok(EncodeResponse {
            outputs,
            model: Some(self.model_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_expressions_onto_the_emotion_labels() {
        // neutral, happy, sad, angry, fearful, disgusted, surprised
        let scores = emotion_scores(&[0.1, 0.6, 0.0, 0.05, 0.05, 0.0, 0.2]);
        let get = |l: &str| scores.iter().find(|s| s.label == l).map(|s| s.score);
        assert_eq!(scores.len(), EMOTION_LABELS.len());
        assert_eq!(get("joy"), Some(0.6));
        assert_eq!(get("surprise"), Some(0.2));
        assert_eq!(get("neutral"), Some(0.1));
        assert_eq!(get("anger"), Some(0.05));
    }

    #[test]
    fn clips_boxes_to_the_image() {
        let d = Detection {
            x: -0.1,
            y: 0.5,
            width: 0.5,
            height: 0.7,
            score: 0.9,
        };
        let (face, crop) = clip(&d, 100.0, 200.0).expect("inside");
        assert_eq!((face.x, face.y), (0.0, 100.0));
        assert!((face.width - 40.0).abs() < 1e-4 && (face.height - 100.0).abs() < 1e-4);
        assert_eq!(crop, (0, 100, 40, 100));
        let outside = Detection { x: 1.2, ..d };
        assert!(clip(&outside, 100.0, 200.0).is_none());
    }
}
