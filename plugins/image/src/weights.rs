//! TF.js weights: a JSON manifest naming each tensor (shape, dtype, optional uint8
//! quantisation) and binary shards holding them back to back, in manifest order.

use std::{collections::HashMap, fs, path::Path};

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Group {
    paths: Vec<String>,
    weights: Vec<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

/// `value = byte * scale + min`, the affine uint8 scheme of tfjs-converter.
#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    scale: f32,
    min: f32,
}

/// A model's tensors by name, in TF layout (NHWC filters: height, width, in, out).
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// sha256 of the shards, so a response can say which weights answered.
    pub sha256: String,
}

impl Weights {
    /// Reads `<dir>/<model>-weights_manifest.json` and its shards.
    pub fn load(dir: &Path, model: &str, device: &Device) -> anyhow::Result<Self> {
        let manifest_path = dir.join(format!("{model}-weights_manifest.json"));
        let manifest: Vec<Group> = serde_json::from_slice(
            &fs::read(&manifest_path)
                .with_context(|| format!("cannot read {}", manifest_path.display()))?,
        )
        .with_context(|| {
            format!(
                "{} is not a TF.js weights manifest",
                manifest_path.display()
            )
        })?;
        let mut tensors = HashMap::new();
        let mut hasher = Sha256::new();
        for group in manifest {
            let mut bytes = Vec::new();
            for shard in &group.paths {
                let path = dir.join(shard);
                bytes.extend(
                    fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
                );
            }
            hasher.update(&bytes);
            let mut rest = bytes.as_slice();
            for spec in group.weights {
                let (values, tail) = decode(&spec, rest)
                    .with_context(|| format!("{model}: tensor {}", spec.name))?;
                rest = tail;
                tensors.insert(spec.name, Tensor::from_vec(values, spec.shape, device)?);
            }
            if !rest.is_empty() {
                bail!(
                    "{model}: {} bytes left over after the last tensor",
                    rest.len()
                );
            }
        }
        Ok(Self {
            tensors,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("the weights have no tensor {name:?}"))
    }
}

/// One tensor's values from the front of `bytes`, and the bytes after it.
fn decode<'b>(spec: &Spec, bytes: &'b [u8]) -> anyhow::Result<(Vec<f32>, &'b [u8])> {
    if spec.dtype != "float32" {
        bail!("dtype {} is not supported", spec.dtype);
    }
    let count: usize = spec.shape.iter().product();
    match &spec.quantization {
        Some(q) if q.dtype == "uint8" => {
            let (data, rest) = split(bytes, count)?;
            Ok((
                data.iter()
                    .map(|&b| f32::from(b) * q.scale + q.min)
                    .collect(),
                rest,
            ))
        }
        Some(q) => bail!("quantisation {} is not supported", q.dtype),
        None => {
            let (data, rest) = split(bytes, count * 4)?;
            let values = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((values, rest))
        }
    }
}

fn split(bytes: &[u8], n: usize) -> anyhow::Result<(&[u8], &[u8])> {
    if bytes.len() < n {
        bail!(
            "the shard ends early: {n} bytes needed, {} left",
            bytes.len()
        );
    }
    Ok(bytes.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantises_and_reads_floats_in_order() {
        let spec_q = Spec {
            name: "q".into(),
            shape: vec![2],
            dtype: "float32".into(),
            quantization: Some(Quantization {
                dtype: "uint8".into(),
                scale: 0.5,
                min: -1.0,
            }),
        };
        let spec_f = Spec {
            name: "f".into(),
            shape: vec![1],
            dtype: "float32".into(),
            quantization: None,
        };
        let mut bytes = vec![0u8, 4];
        bytes.extend(2.5f32.to_le_bytes());
        let (q, rest) = decode(&spec_q, &bytes).expect("quantised");
        assert_eq!(q, [-1.0, 1.0]);
        let (f, rest) = decode(&spec_f, rest).expect("float");
        assert_eq!(f, [2.5]);
        assert!(rest.is_empty());
        assert!(decode(&spec_f, &bytes[..2]).is_err());
    }
}
