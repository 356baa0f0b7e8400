//! Tokenised training batches for the encoder: texts of similar length together (the
//! batch pads to its longest), in an order drawn from the seed.

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokenizers::{Tokenizer, TruncationParams};

/// Tokens per text in training; longer texts are cut (tweets rarely reach it).
const MAX_TOKENS: usize = 128;
/// Texts sorted by length within pools of this many batches.
const POOL_BATCHES: usize = 50;

pub(crate) struct Tokens {
    ids: Vec<Vec<u32>>,
}

impl Tokens {
    /// Token ids of every text, with the model's own tokenizer.
    pub fn new(model_dir: &Path, texts: &[String]) -> anyhow::Result<Self> {
        let mut tokenizer = Tokenizer::from_file(model_dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("reading tokenizer.json: {e}"))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        let encodings = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenising: {e}"))
            .context("tokenising the training texts")?;
        Ok(Self {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
        })
    }

    /// `indices` cut into batches of `size`, similar lengths together, shuffled.
    pub fn batches(&self, indices: &[usize], size: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
        let mut order = indices.to_vec();
        order.shuffle(rng);
        let mut batches = Vec::new();
        for pool in order.chunks_mut(size * POOL_BATCHES) {
            pool.sort_by_key(|&i| self.ids[i].len());
            batches.extend(pool.chunks(size).map(<[usize]>::to_vec));
        }
        batches.shuffle(rng);
        batches
    }

    /// Padded ids and the attention mask (1 = token) of the texts at `batch`.
    pub fn tensors(&self, batch: &[usize]) -> anyhow::Result<(Tensor, Tensor)> {
        let len = batch.iter().map(|&i| self.ids[i].len()).max().unwrap_or(1);
        let mut ids = vec![0u32; batch.len() * len];
        let mut mask = vec![0f32; batch.len() * len];
        for (row, &i) in batch.iter().enumerate() {
            for (col, &id) in self.ids[i].iter().enumerate() {
                ids[row * len + col] = id;
                mask[row * len + col] = 1.0;
            }
        }
        let shape = (batch.len(), len);
        Ok((
            Tensor::from_vec(ids, shape, &Device::Cpu)?,
            Tensor::from_vec(mask, shape, &Device::Cpu)?,
        ))
    }
}
