//! The "text-zh" modality as an empathy plugin: request validation around
//! [`ChineseReader`]. Its outputs carry a reading, not an embedding.

use std::path::{Path, PathBuf};

use empathy_plugin_api::{Plugin, PluginError, Settings, TEXT_LIMIT_SETTINGS, TextLimits};
use empathy_proto::v1::{
    EncodeOutput, EncodeRequest, EncodeResponse, ModalityInfo, ModelRef, PluginConfig, TextReading,
    WordSignal,
};

use crate::lexicon::ZhLexicon;
use crate::reader::{ChineseReader, Reading, SentimentSource};
use crate::sentiment::SentimentModel;

pub const MODEL_ID: &str = "empathy/text-zh";
/// Where `empathy train` puts the sentiment model under `PluginConfig.assets_dir`.
pub const MODEL_SUBDIR: &str = "text-zh/sentiment";
/// What the model was trained on and with, beside it (written by `empathy train`).
pub const MANIFEST_FILE: &str = "manifest.json";
const SETTINGS: [&str; 4] = [
    "model_dir",
    "sentiment",
    TEXT_LIMIT_SETTINGS[0],
    TEXT_LIMIT_SETTINGS[1],
];

/// The modality this plugin serves.
pub fn modality() -> String {
    empathy_proto::modality::text_in("zh")
}

pub struct ChineseTextPlugin {
    reader: ChineseReader,
    /// "lexicon-<n words>" or the sentiment model's version.
    version: String,
    limits: TextLimits,
}

impl ChineseTextPlugin {
    /// `sentiment` = "model" (default) or "lexicon" (the lexicon-only baseline). The
    /// lexicon is DUTIR and HowNet plus the expansion the model was trained with.
    pub fn load(
        assets_dir: &Path,
        model_dir: Option<PathBuf>,
        sentiment: &str,
    ) -> anyhow::Result<(ChineseReader, String)> {
        let dir = model_dir.unwrap_or_else(|| assets_dir.join(MODEL_SUBDIR));
        let expansion = trained_expansion(&dir)?;
        let lexicon = ZhLexicon::read_with(assets_dir, expansion.as_deref())?;
        let (source, version) = match sentiment {
            "model" => {
                let (model, version) = SentimentModel::load(&dir)?;
                (SentimentSource::Model(model), version)
            }
            "lexicon" => (
                SentimentSource::Lexicon,
                format!("lexicon-{}", lexicon.len()),
            ),
            other => {
                anyhow::bail!("setting sentiment={other:?}: expected \"model\" or \"lexicon\"")
            }
        };
        Ok((ChineseReader::new(lexicon, source), version))
    }

    fn model_ref(&self) -> ModelRef {
        ModelRef {
            id: MODEL_ID.to_string(),
            version: self.version.clone(),
        }
    }
}

/// The expansion `<model_dir>/manifest.json` records (a directory relative to the
/// assets); none without a manifest.
fn trained_expansion(model_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = model_dir.join(MANIFEST_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?;
    Ok(manifest["expansion"].as_str().map(str::to_string))
}

fn output(reading: Reading) -> EncodeOutput {
    EncodeOutput {
        reading: Some(TextReading {
            sentiment: reading.sentiment.to_vec(),
            emotions: reading.emotions.to_vec(),
            words: reading
                .words
                .into_iter()
                .map(|(word, weight, signal)| WordSignal {
                    word,
                    weight,
                    signal,
                })
                .collect(),
        }),
        ..Default::default()
    }
}

impl Plugin for ChineseTextPlugin {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new("text-zh", &config.settings, &SETTINGS)?;
        let limits = TextLimits::from_settings(&settings)?;
        let (reader, version) = Self::load(
            Path::new(&config.assets_dir),
            settings.get("model_dir").map(PathBuf::from),
            settings.get("sentiment").unwrap_or("model"),
        )
        .map_err(|e| PluginError::unavailable(format!("{e:#}")))?;
        Ok(Self {
            reader,
            version,
            limits,
        })
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: modality(),
            embedding_dim: 0,
            model: Some(self.model_ref()),
            max_batch: u32::try_from(self.limits.max_batch).unwrap_or(u32::MAX),
            max_input_size: self.limits.max_input_chars as u64,
            plugin: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).to_string(),
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let texts = self.limits.validate(&request, &modality())?;
        Ok(EncodeResponse {
            outputs: texts
                .into_iter()
                .map(|t| output(self.reader.read(t)))
                .collect(),
            model: Some(self.model_ref()),
        })
    }
}
