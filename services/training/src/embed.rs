//! The corpus's text embeddings: from the cache, else from the encoder (then cached).

use std::time::Instant;

use anyhow::{Context, ensure};

use super::{TextEncoder, TrainConfig};
use crate::embedding_cache;
use empathy_corpus::Corpus;

pub(super) fn embeddings(
    corpus: &Corpus,
    config: &TrainConfig,
    mut encoder: TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<f32>> {
    embed_texts(
        &corpus.texts,
        &corpus.sha256,
        config,
        &mut encoder,
        progress,
    )
}

/// Embeddings of `texts` (made from the data file `data_sha256`), row-major.
pub(super) fn embed_texts(
    texts: &[String],
    data_sha256: &str,
    config: &TrainConfig,
    encoder: &mut TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<f32>> {
    let (n, width) = (texts.len(), config.dims.text);
    let cache = config
        .cache_dir
        .clone()
        .or_else(embedding_cache::default_dir)
        .map(|dir| embedding_cache::path(&dir, encoder.id, data_sha256, texts));
    if let Some(path) = &cache
        && let Some(values) = embedding_cache::load(path, n, width)
    {
        progress(&format!("embeddings: from the cache {}", path.display()));
        return Ok(values);
    }
    // Similar lengths together: the encoder pads each batch to its longest text.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![0.0f32; n * width];
    let started = Instant::now();
    let mut done = 0;
    for (chunk_no, chunk) in order.chunks(config.embed_batch).enumerate() {
        let texts: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
        let vectors = (encoder.embed)(&texts).context("the text encoder failed")?;
        ensure!(
            vectors.len() == chunk.len(),
            "the text encoder returned {} vectors for {} texts",
            vectors.len(),
            chunk.len()
        );
        for (&i, v) in chunk.iter().zip(&vectors) {
            ensure!(
                v.len() == width,
                "the text encoder gives {} values per text, the model expects {width}",
                v.len()
            );
            ensure!(
                v.iter().all(|x| x.is_finite()),
                "the text encoder returned NaN"
            );
            out[i * width..(i + 1) * width].copy_from_slice(v);
        }
        done += chunk.len();
        if chunk_no % 20 == 19 || done == n {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress(&format!("embedded {done}/{n} texts ({rate:.0}/s)"));
        }
    }
    if let Some(path) = &cache {
        match embedding_cache::store(path, n, width, &out) {
            Ok(()) => progress(&format!("embeddings cached in {}", path.display())),
            Err(e) => progress(&format!("warning: embeddings not cached: {e:#}")),
        }
    }
    Ok(out)
}
