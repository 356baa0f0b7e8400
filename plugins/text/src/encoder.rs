//! Sentence embeddings with a sentence-transformers BERT (all-MiniLM-L6-v2) or MPNet
//! (all-mpnet-base-v2) on candle: tokenise, run the encoder, mean-pool over the attention
//! mask, L2-normalise.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::Bert;
use crate::config::{Config, Family};
use empathy_simd::Precision;

/// Most sentences in one forward pass.
const MAX_CHUNK_SENTENCES: usize = 64;
/// Most padded tokens in one forward pass: bounds the attention matrices
/// (heads x tokens x longest) so long sentences run in smaller chunks that stay in cache.
const MAX_CHUNK_TOKENS: usize = 4096;

/// A loaded sentence encoder. Cheap to share across threads (`&self` only).
pub struct SentenceEncoder {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    version: String,
    family: Family,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    pooling_mode_mean_tokens: bool,
}

impl SentenceEncoder {
    /// Loads a sentence-transformers model directory (config.json, tokenizer.json,
    /// model.safetensors, and optionally sentence_bert_config.json, 1_Pooling/config.json).
    pub fn load(model_dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        ensure!(
            model_dir.join("model.safetensors").is_file(),
            "text model not found at {}: run `empathy assets fetch`",
            model_dir.display()
        );
        let config: Config = read_json(&model_dir.join("config.json"))?;
        let family = config.family()?;
        let weights_path = model_dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let version = hex::encode(&Sha256::digest(&weights)[..6]);
        let vb = VarBuilder::from_slice_safetensors(&weights, DType::F32, device)?;
        let model = Bert::load(vb, &config, precision)
            .with_context(|| format!("loading the encoder from {}", weights_path.display()))?;
        let max_tokens = match read_optional_json::<SentenceBertConfig>(
            &model_dir.join("sentence_bert_config.json"),
        )? {
            Some(c) => c.max_seq_length.min(model.max_positions()),
            None => model.max_positions(),
        };
        if let Some(pooling) =
            read_optional_json::<PoolingConfig>(&model_dir.join("1_Pooling/config.json"))?
        {
            ensure!(
                pooling.pooling_mode_mean_tokens,
                "{}: only mean pooling is supported",
                model_dir.display()
            );
        }

        let mut tokenizer = Tokenizer::from_file(model_dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("reading tokenizer.json: {e}"))?;
        // The shipped tokenizer pads everything to 128 and truncates at 128; we pad each
        // chunk to its own longest sentence and truncate where sentence-transformers does.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;

        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            dim: config.hidden_size,
            max_tokens,
            version,
            family,
        })
    }

    /// Which encoder family the weights are.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Embedding width (384 for MiniLM-L6, 768 for mpnet-base).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens per sentence, special tokens included; longer input is truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether the dense layers run in bf16 (AMX tiles or AVX-512 BF16) rather than f32.
    pub fn bf16(&self) -> bool {
        self.model.bf16()
    }

    /// First 12 hex digits of the sha256 of model.safetensors.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// One unit-length embedding per text, in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();

        // Longest first, so each chunk pads to nearly its own length.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));

        let mut out = vec![Vec::new(); ids.len()];
        let mut rest = order.as_slice();
        while let Some(&first) = rest.first() {
            let longest = ids[first].len().max(1);
            let take = (MAX_CHUNK_TOKENS / longest).clamp(1, MAX_CHUNK_SENTENCES);
            let (chunk, tail) = rest.split_at(take.min(rest.len()));
            let chunk_ids: Vec<&[u32]> = chunk.iter().map(|&i| ids[i]).collect();
            let vectors = self
                .device
                .with_context(|| self.forward_chunk(&chunk_ids))?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
            rest = tail;
        }
        Ok(out)
    }

    /// Pads to the chunk's longest sentence, runs BERT, mean-pools and normalises.
    fn forward_chunk(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let n = ids.len();
        let len = ids.iter().map(|s| s.len()).max().unwrap_or(0);
        ensure!(len > 0, "empty chunk");
        let mut flat_ids = vec![0u32; n * len];
        let mut mask = vec![0f32; n * len];
        for (row, sentence) in ids.iter().enumerate() {
            let start = row * len;
            flat_ids[start..start + sentence.len()].copy_from_slice(sentence);
            mask[start..start + sentence.len()].fill(1.0);
        }
        let input_ids = Tensor::from_vec(flat_ids, (n, len), &self.device)?;
        let lengths: Vec<usize> = ids.iter().map(|s| s.len()).collect();
        let hidden = self.model.forward(&input_ids, &lengths)?;
        let mean = if lengths.iter().any(|&l| l < len) {
            let mask = Tensor::from_vec(mask, (n, len), &self.device)?.unsqueeze(D::Minus1)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            summed.broadcast_div(&mask.sum(1)?)?
        } else {
            hidden.mean(1)?
        };
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_optional_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Parses "cpu", "cuda" or "cuda:N" (empty means cpu).
pub fn parse_device(name: &str) -> Result<Device> {
    match name.trim() {
        "" | "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Device::new_cuda(ordinal)?),
            _ => bail!("unknown device {other:?}: expected \"cpu\" or \"cuda:N\""),
        },
    }
}
