//! The candle networks against the original: face-api 1.7.15 on TF.js, run by
//! `reference/make_reference.cjs` on the same photos and weights. Needs the assets
//! (`empathy assets fetch`).

use std::path::PathBuf;

use candle_core::Device;
use empathy_plugin_image::{MODEL_SUBDIR, detector::FaceDetector, expression::ExpressionNet};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-3;

#[derive(Deserialize)]
struct Reference {
    input_size: usize,
    score_threshold: f32,
    photos: Vec<Photo>,
}

#[derive(Deserialize)]
struct Photo {
    file: String,
    detector_output: Vec<f32>,
    faces: Vec<RefFace>,
}

#[derive(Deserialize)]
struct RefFace {
    /// x, y, width, height in pixels
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    features: Vec<f32>,
    probabilities: Vec<f32>,
}

fn assets() -> PathBuf {
    std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn candle_networks_match_tfjs() -> anyhow::Result<()> {
    let reference: Reference =
        serde_json::from_str(include_str!("../reference/reference_outputs.json"))?;
    let dir = assets().join(MODEL_SUBDIR);
    let detector = FaceDetector::load(&dir, &Device::Cpu)?;
    let expressions = ExpressionNet::load(&dir, &Device::Cpu)?;
    for photo in &reference.photos {
        let image = image::open(assets().join("photos").join(&photo.file))?.to_rgb8();
        // The raw grid, compared in TF's NHWC order.
        let grid = detector.grid(&image, reference.input_size)?;
        let ours = grid
            .permute((0, 2, 3, 1))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let diff = max_diff(&ours, &photo.detector_output);
        assert!(
            diff < TOLERANCE,
            "{}: detector output differs by {diff}",
            photo.file
        );

        let found = detector.detect(&image, reference.input_size, reference.score_threshold)?;
        assert_eq!(found.len(), photo.faces.len(), "{}: face count", photo.file);
        let (w, h) = (image.width() as f32, image.height() as f32);
        for (ours, theirs) in found.iter().zip(&photo.faces) {
            let got = [ours.x * w, ours.y * h, ours.width * w, ours.height * h];
            let diff = max_diff(&got, &theirs.bbox);
            assert!(
                diff < 0.05,
                "{}: box {got:?} vs {:?}",
                photo.file,
                theirs.bbox
            );
            assert!((ours.score - theirs.score).abs() < TOLERANCE);
            // The crop face-api takes: the box floored to whole pixels.
            let [x, y, cw, ch] = theirs.bbox.map(|v| v.floor() as u32);
            let crop = image::imageops::crop_imm(&image, x, y, cw, ch).to_image();
            let expression = expressions.classify(&[crop])?.remove(0);
            let diff = max_diff(&expression.features, &theirs.features);
            assert!(
                diff < TOLERANCE,
                "{}: features differ by {diff}",
                photo.file
            );
            let diff = max_diff(&expression.probabilities, &theirs.probabilities);
            assert!(
                diff < TOLERANCE,
                "{}: probabilities differ by {diff}",
                photo.file
            );
        }
    }
    Ok(())
}
