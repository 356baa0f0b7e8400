//! Converts a CTranslate2 Whisper model (`model.bin`, as faster-whisper ships it) and
//! openai-whisper's assets (mel filters, tiktoken vocabulary) into a whisper.cpp ggml
//! file, so that whisper-rs can load a model that only a package registry carries.
//!
//! No whisper.cpp here: the assets command links this crate, and the core binaries must
//! not link whisper.

mod ctranslate2;
mod ggml;
mod whisper_assets;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

pub use ggml::HParams;

/// Where openai-whisper's `whisper/assets/` files are.
#[derive(Debug, Clone)]
pub struct WhisperAssets {
    pub mel_filters_npz: PathBuf,
    /// `gpt2.tiktoken`, the English-only vocabulary.
    pub gpt2_tiktoken: PathBuf,
    /// `multilingual.tiktoken`.
    pub multilingual_tiktoken: PathBuf,
}

impl WhisperAssets {
    /// The files under one directory, named as openai-whisper names them.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            mel_filters_npz: dir.join("mel_filters.npz"),
            gpt2_tiktoken: dir.join("gpt2.tiktoken"),
            multilingual_tiktoken: dir.join("multilingual.tiktoken"),
        }
    }
}

/// What was converted.
#[derive(Debug, Clone)]
pub struct Converted {
    pub hparams: HParams,
    pub tensors: usize,
    pub vocab: usize,
}

/// Converts `parts` (one `model.bin`, or its pieces in order, concatenated) into the
/// ggml file `out`. The file appears only when complete: it is written beside `out`
/// and renamed.
pub fn convert(parts: &[PathBuf], assets: &WhisperAssets, out: &Path) -> anyhow::Result<Converted> {
    ensure!(!parts.is_empty(), "no model.bin given");
    let mut buf = Vec::new();
    for part in parts {
        buf.extend(fs::read(part).with_context(|| format!("cannot read {}", part.display()))?);
    }
    let model = ctranslate2::Model::parse(&buf)
        .with_context(|| format!("{} is not a CTranslate2 model", parts[0].display()))?;
    ensure!(
        model.spec == "WhisperSpec",
        "{} holds a {} model, not Whisper",
        parts[0].display(),
        model.spec
    );
    let hparams = HParams::from_model(&model, &buf)?;
    let filters = whisper_assets::mel_filters(&assets.mel_filters_npz, hparams.n_mels)?;
    let vocab = whisper_assets::tiktoken_vocab(if hparams.is_multilingual() {
        &assets.multilingual_tiktoken
    } else {
        &assets.gpt2_tiktoken
    })?;
    ensure!(
        vocab.len() < hparams.n_vocab,
        "the vocabulary has {} tokens but the model only {}",
        vocab.len(),
        hparams.n_vocab
    );

    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let partial = out.with_extension("part");
    let file = fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut writer = BufWriter::new(file);
    let tensors = ggml::write(&mut writer, &model, &buf, &hparams, &filters, &vocab)?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    fs::rename(&partial, out)?;
    Ok(Converted {
        hparams,
        tensors,
        vocab: vocab.len(),
    })
}
