//! Tuning the encoder on the tweet corpus: the training split (or a fold's), the
//! frozen encoder's cached embeddings as distillation targets, the topic priors as
//! logit bias. A finished tuning is kept in the user cache under a key of everything
//! that determines it, so training again (or CI on a warm machine) reuses it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{TunedEncoder, TuningConfig, TuningData, copy_dir, tune_encoder, version_of};
use empathy_corpus::Corpus;

/// Where tuned encoders are published: `<assets>/text/tuned/<version>`.
pub fn tuned_root(assets_dir: &Path) -> PathBuf {
    assets_dir.join("text").join("tuned")
}

/// Where a tuning's encoder ends up.
#[derive(Debug, Clone, Copy)]
pub enum Keep<'a> {
    /// Published under `tuned_root(assets_dir)`, for a version to serve.
    Published { assets_dir: &'a Path },
    /// Only in the user cache, for a benchmark fold, which serves nothing: read from
    /// there, or from `scratch` when there is no cache to read (the caller removes
    /// `scratch` once done with it).
    Unpublished { scratch: &'a Path },
}

/// Tunes `base_dir`'s encoder on the corpus examples at `train` (or takes the same
/// tuning from the cache) and keeps it as `keep` says.
#[allow(clippy::too_many_arguments)]
pub fn tune_on_corpus(
    keep: Keep<'_>,
    base_dir: &Path,
    corpus: &Corpus,
    frozen: &[f32],
    bias: &[[f32; 3]],
    train: &[usize],
    config: &TuningConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<TunedEncoder> {
    let cached = cache_dir(base_dir, corpus, train, config)?;
    if let Some(dir) = &cached
        && dir.join("model.safetensors").is_file()
    {
        progress(&format!("tuned encoder: from the cache {}", dir.display()));
        return match keep {
            Keep::Published { assets_dir } => publish(dir, assets_dir),
            Keep::Unpublished { .. } => Ok(TunedEncoder {
                dir: dir.clone(),
                version: version_of(dir)?,
                seconds: 0.0,
            }),
        };
    }
    let data = TuningData {
        texts: &corpus.texts,
        labels: &corpus.labels,
        frozen,
        bias,
        train,
    };
    let scratch = match keep {
        Keep::Published { assets_dir } => tempdir_in(&tuned_root(assets_dir))?,
        Keep::Unpublished { scratch } => scratch.to_path_buf(),
    };
    let tuned = tune_encoder(base_dir, &scratch, &data, config, progress)?;
    if let Some(dir) = &cached {
        // A cache that cannot be written only costs time next run.
        if let Err(e) = copy_dir_all(&tuned.dir, dir) {
            progress(&format!("warning: tuned encoder not cached: {e:#}"));
        }
    }
    let Keep::Published { assets_dir } = keep else {
        return Ok(tuned);
    };
    let published = publish(&tuned.dir, assets_dir)?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(TunedEncoder {
        seconds: tuned.seconds,
        ..published
    })
}

/// Copies a tuned model into `tuned_root(assets_dir)/<version>` (if not there yet).
fn publish(dir: &Path, assets_dir: &Path) -> anyhow::Result<TunedEncoder> {
    let version = version_of(dir)?;
    let target = tuned_root(assets_dir).join(&version);
    if !target.join("model.safetensors").is_file() {
        copy_dir_all(dir, &target)?;
    }
    Ok(TunedEncoder {
        dir: target,
        version,
        seconds: 0.0,
    })
}

fn copy_dir_all(from: &Path, to: &Path) -> anyhow::Result<()> {
    let staging = to.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    copy_dir(from, &staging)?;
    std::fs::copy(
        from.join("model.safetensors"),
        staging.join("model.safetensors"),
    )?;
    std::fs::rename(&staging, to)?;
    Ok(())
}

/// `<root>/.tuning-<pid>`, a scratch directory for this process.
pub fn tempdir_in(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!(".tuning-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `<user cache>/encoders/<key>`, the key hashing the base weights, the corpus, the
/// training examples (texts and labels) and the settings; None without a user cache directory.
fn cache_dir(
    base_dir: &Path,
    corpus: &Corpus,
    train: &[usize],
    config: &TuningConfig,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(root) =
        crate::embedding_cache::default_dir().and_then(|d| d.parent().map(|p| p.join("encoders")))
    else {
        return Ok(None);
    };
    let mut key = Sha256::new();
    key.update(version_of(base_dir)?);
    key.update(&corpus.sha256);
    // The examples themselves: made ones are appended after the corpus rows.
    for &i in train {
        key.update(corpus.texts[i].as_bytes());
        key.update([0, corpus.labels[i] as u8]);
    }
    key.update(serde_json::to_vec(config)?);
    Ok(Some(root.join(hex::encode(&key.finalize()[..16]))))
}
