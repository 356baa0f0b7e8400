//! How unlike the texts a version was trained on a text is. A head trained on tweets
//! reads a clinic letter or a film review with less right to be sure; fusion trusts the
//! meaning reader more there. The measure is the Mahalanobis distance of the text's
//! embedding from the training texts' (their mean and covariance), and a text is
//! unusual past the distance that QUANTILE of the training texts stay within.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file a version keeps it in, beside its weights.
pub const FILE: &str = "typicality.safetensors";
/// The share of the training texts that count as usual.
pub const QUANTILE: f32 = 0.95;

/// What the manifest records: the file's checksum and the distance past which a text
/// is unusual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypicalityRef {
    pub sha256: String,
    pub threshold: f32,
    pub quantile: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Typicality {
    mean: Vec<f32>,
    /// W, row-major (dim x dim), with W^T W the inverse covariance: the distance is
    /// |W (x - mean)|.
    whiten: Vec<f32>,
    pub threshold: f32,
}

impl Typicality {
    pub fn new(mean: Vec<f32>, whiten: Vec<f32>, threshold: f32) -> Result<Typicality> {
        ensure!(
            !mean.is_empty() && whiten.len() == mean.len() * mean.len(),
            "a whitening of {} values does not fit a mean of {}",
            whiten.len(),
            mean.len()
        );
        ensure!(
            threshold.is_finite() && threshold > 0.0,
            "threshold {threshold}"
        );
        Ok(Typicality {
            mean,
            whiten,
            threshold,
        })
    }

    /// The Mahalanobis distance of `embedding` from the training texts; None for an
    /// embedding of another width, which says nothing about them.
    pub fn distance(&self, embedding: &[f32]) -> Option<f32> {
        if embedding.len() != self.mean.len() {
            return None;
        }
        let centred: Vec<f32> = embedding
            .iter()
            .zip(&self.mean)
            .map(|(x, m)| x - m)
            .collect();
        let squared: f32 = self
            .whiten
            .chunks(centred.len())
            .map(|row| row.iter().zip(&centred).map(|(w, c)| w * c).sum::<f32>())
            .map(|v| v * v)
            .sum();
        Some(squared.sqrt())
    }

    /// Farther from the training texts than QUANTILE of them are.
    pub fn unusual(&self, embedding: &[f32]) -> bool {
        self.distance(embedding).is_some_and(|d| d > self.threshold)
    }

    /// Writes the file into `dir`; its bytes, for the checksum.
    pub(crate) fn write(&self, dir: &Path) -> Result<Vec<u8>> {
        let dim = self.mean.len();
        let tensors = HashMap::from([
            (
                "mean".to_string(),
                Tensor::from_slice(&self.mean, dim, &Device::Cpu)?,
            ),
            (
                "whiten".to_string(),
                Tensor::from_slice(&self.whiten, (dim, dim), &Device::Cpu)?,
            ),
        ]);
        let path = dir.join(FILE);
        candle_core::safetensors::save(&tensors, &path)?;
        std::fs::File::open(&path)?.sync_all()?;
        Ok(std::fs::read(&path)?)
    }

    /// Reads the file in `dir` that `reference` names, checked against its checksum.
    pub(crate) fn read(dir: &Path, reference: &TypicalityRef) -> Result<Typicality> {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "model version {} names a typicality but has no readable {FILE}",
                dir.display()
            )
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        ensure!(
            digest == reference.sha256,
            "model version {}: checksum mismatch ({FILE} is {digest}, the manifest says {}): \
             the file was changed or is half-written",
            dir.display(),
            reference.sha256
        );
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = tensors
                .get(name)
                .with_context(|| format!("{} has no {name}", path.display()))?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        Typicality::new(get("mean")?, get("whiten")?, reference.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn distance_is_whitened_and_the_threshold_marks_the_unusual() -> Result<()> {
        // Variance 4 along x and 1 along y: W = diag(1/2, 1).
        let t = Typicality::new(vec![1.0, 0.0], vec![0.5, 0.0, 0.0, 1.0], 1.5)?;
        assert_eq!(t.distance(&[1.0, 0.0]), Some(0.0));
        assert!((t.distance(&[3.0, 0.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!((t.distance(&[1.0, 2.0]).unwrap() - 2.0).abs() < 1e-6);
        assert!(!t.unusual(&[3.0, 0.0]) && t.unusual(&[1.0, 2.0]));
        assert_eq!(t.distance(&[9.0, 9.0, 9.0]), None);
        assert!(!t.unusual(&[9.0, 9.0, 9.0]), "another width says nothing");
        Ok(())
    }

    #[test]
    fn it_reads_back_what_it_wrote_and_refuses_a_changed_file() -> Result<()> {
        let dir = TempDir::new("typicality");
        let t = Typicality::new(vec![0.1, 0.2], vec![1.0, 0.5, 0.0, 2.0], 3.0)?;
        let mut reference = TypicalityRef {
            sha256: hex::encode(Sha256::digest(t.write(dir.path())?)),
            threshold: 3.0,
            quantile: QUANTILE,
        };
        assert_eq!(Typicality::read(dir.path(), &reference)?, t);
        reference.sha256 = "0".repeat(64);
        let err = Typicality::read(dir.path(), &reference).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        Ok(())
    }
}
