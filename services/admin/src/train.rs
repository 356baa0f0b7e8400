//! `empathy train`: embeds the tweet corpus with the text plugin, trains the fusion
//! model's sentiment head, calibrates its scores, compares it with VADER on the
//! held-out test split and writes a new model version.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use empathy_model::{FusionModel, Lexicon, ModelInputs, Prediction};
use empathy_plugin_api::host::{LoadedPlugin, library_file_name};
use empathy_proto::v1::{EncodeRequest, PluginConfig};
use empathy_proto::{SENTIMENT_LABELS, modality};
use empathy_training::Embed;
use empathy_training::encoder_tuning::TuningConfig;
use empathy_training::zh_sentiment::train_zh_sentiment;
use empathy_training::{TextEncoder, TrainConfig, train_sentiment, tune_text_encoder};

/// Most texts per call into the plugin.
const MAX_CHUNK: usize = 256;

/// Sentences whose sentiment anyone would agree on, shown after training.
const SPOT_CHECKS: [&str; 3] = [
    "I absolutely love this, thank you so much!",
    "This is the worst service I have ever had.",
    "The meeting is at 3 pm in room 4.",
];

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Downloaded models and data (`empathy assets fetch`).
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    pub assets: PathBuf,
    /// Where model versions are written [default: <assets>/models]. The Chinese
    /// plugin's model is not a version: it is written where the plugin reads it,
    /// <assets>/text-zh/sentiment, either way (so a trial with another --seed replaces it).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Seeds the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most training epochs (early stopping on validation macro-F1 usually ends sooner).
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Directory of the text plugin library [default: this executable's directory].
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    /// Expanded lexicon for the lexicon features (`empathy lexicon expand`): none,
    /// latest, or a version such as v0003 under <assets>/lexicon/expanded. The model
    /// version records it and keeps a copy; serving then uses the same one.
    #[arg(long, default_value = "none")]
    pub lexicon_expansion: String,
    /// Contrast examples ("A, but B") to make from the training split, besides every
    /// negation of a positive statement the patterns find; 0 = none.
    #[arg(long, default_value_t = TrainConfig::default().augment)]
    pub augment: usize,
    /// Conversations to make from the training split so the model learns to read the
    /// turns before the one analysed (a scene of one feeling, then a last turn); 0 =
    /// none, and the version ignores context.
    #[arg(long, default_value_t = TrainConfig::default().dialogues)]
    pub dialogues: usize,
    /// Train only the Chinese text plugin's sentiment model (seconds), e.g. after an
    /// upgrade that added the plugin.
    #[arg(long)]
    pub chinese_only: bool,
    /// Chinese expanded lexicon (`empathy lexicon expand --language zh`) the Chinese
    /// plugin adds to DUTIR and HowNet: none, latest, or a version under
    /// <assets>/lexicon/expanded-zh. The model records it; the plugin serves it.
    #[arg(long, default_value = "none")]
    pub chinese_expansion: String,
    /// The text encoder the version reads with.
    #[arg(long, value_enum, default_value_t = BaseEncoder::Minilm)]
    pub text_encoder: BaseEncoder,
    #[command(flatten)]
    pub tuning: TuningArgs,
    #[command(flatten)]
    pub head: HeadArgs,
}

/// How the fusion network over the embeddings is fitted (`empathy train`, `empathy
/// generality`).
#[derive(clap::Args, Debug, Clone)]
pub struct HeadArgs {
    /// AdamW learning rate of the fusion network. A lower one fits tweets better and
    /// written sentences and conversations worse (README, "A larger sentence encoder").
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub learning_rate: f64,
    /// Dropout on the network's pooled hidden vector.
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    pub dropout: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Weight of each topic's label prior added to the logits in training, so that the
    /// network does not learn a topic's label mix as a shortcut; 0 leaves them out.
    #[arg(long, default_value_t = TrainConfig::default().topic_prior_weight)]
    pub topic_prior_weight: f64,
}

impl HeadArgs {
    /// `config` with these settings, checked.
    pub fn apply(&self, config: &mut TrainConfig) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.learning_rate > 0.0 && self.learning_rate.is_finite(),
            "--learning-rate must be a positive number, not {}",
            self.learning_rate
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.dropout),
            "--dropout must be at least 0 and below 1, not {}",
            self.dropout
        );
        anyhow::ensure!(
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            "--weight-decay must be 0 or more, not {}",
            self.weight_decay
        );
        anyhow::ensure!(
            self.topic_prior_weight >= 0.0 && self.topic_prior_weight.is_finite(),
            "--topic-prior-weight must be 0 or more, not {}",
            self.topic_prior_weight
        );
        config.learning_rate = self.learning_rate;
        config.dropout = self.dropout;
        config.weight_decay = self.weight_decay;
        config.topic_prior_weight = self.topic_prior_weight;
        Ok(())
    }
}

/// The sentence encoders a version can be trained on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseEncoder {
    /// all-MiniLM-L6-v2: 384 wide, 6 layers; the fast one.
    Minilm,
    /// all-mpnet-base-v2: 768 wide, 12 layers; about 6 times the work per text, and
    /// reads meaning outside tweets far better (README, "Beyond tweets").
    Mpnet,
}

impl BaseEncoder {
    /// Its directory under the assets.
    pub fn subdir(self) -> &'static str {
        match self {
            BaseEncoder::Minilm => crate::assets::BASE_TEXT_MODEL,
            BaseEncoder::Mpnet => crate::assets::MPNET_TEXT_MODEL,
        }
    }

    /// Only MiniLM has a differentiable copy to tune (`empathy_training::encoder_tuning`).
    pub fn check_tunable(self, tune: bool) -> anyhow::Result<()> {
        anyhow::ensure!(
            !tune || self == BaseEncoder::Minilm,
            "--tune-encoder tunes MiniLM only: leave out --text-encoder {self:?}"
        );
        Ok(())
    }

    /// The text plugin loaded with it, and the directory a version trained on it
    /// records (None for the plugin's default, MiniLM).
    pub fn load(
        self,
        assets: &Path,
        plugin_dir: Option<&Path>,
    ) -> anyhow::Result<(LoadedPlugin, Option<String>)> {
        let recorded = (self != BaseEncoder::Minilm).then(|| self.subdir().to_string());
        let model_dir = recorded.as_ref().map(|d| assets.join(d));
        let plugin = load_text_plugin(assets, plugin_dir, model_dir.as_deref())?;
        Ok((plugin, recorded))
    }
}

/// How the text encoder is tuned (`empathy train`, `empathy generality`).
#[derive(clap::Args, Debug, Clone)]
pub struct TuningArgs {
    /// Fine-tune the text encoder's top layers on the sentiment task first, and train
    /// the model on its embeddings (`train`'s encoder becomes a model of its own under
    /// <assets>/text/tuned, a benchmark fold's is kept in the user cache only; the base
    /// encoder is untouched).
    #[arg(long)]
    pub tune_encoder: bool,
    /// Encoder layers tuned, from the top.
    #[arg(long, default_value_t = TuningConfig::default().trainable_layers)]
    pub tune_layers: usize,
    /// Passes over the training split when tuning the encoder.
    #[arg(long, default_value_t = TuningConfig::default().epochs)]
    pub tune_epochs: usize,
    /// Most tweets per tuning epoch (a seeded sample) [default: all].
    #[arg(long)]
    pub tune_examples: Option<usize>,
    /// Learning rate of the top tuned layer (each layer below: 0.8 times the one above).
    #[arg(long, default_value_t = TuningConfig::default().learning_rate)]
    pub tune_rate: f64,
    /// Weight of the squared distance to the frozen encoder's embedding.
    #[arg(long, default_value_t = TuningConfig::default().distill_weight)]
    pub tune_distill: f64,
}

impl TuningArgs {
    pub fn config(&self, seed: u64) -> TuningConfig {
        TuningConfig {
            seed,
            trainable_layers: self.tune_layers,
            epochs: self.tune_epochs,
            max_examples: self.tune_examples,
            learning_rate: self.tune_rate,
            distill_weight: self.tune_distill,
            ..TuningConfig::default()
        }
    }
}

/// The published expansion directory `choice` names (none, latest, vNNNN).
pub fn expansion_dir(assets: &Path, choice: &str) -> anyhow::Result<Option<PathBuf>> {
    expansion_in(
        &empathy_training::lexicon_expansion::default_dir(assets),
        choice,
    )
}

/// `choice` (none, latest or vNNNN) among the expansion versions under `dir`.
fn expansion_in(dir: &Path, choice: &str) -> anyhow::Result<Option<PathBuf>> {
    match choice {
        "none" => Ok(None),
        "latest" => empathy_training::lexicon_expansion::latest_version(dir)?
            .map(Some)
            .with_context(|| {
                format!(
                    "no expanded lexicon in {}: run `empathy lexicon expand`",
                    dir.display()
                )
            }),
        v if empathy_model::registry::is_version_name(v) => {
            let path = dir.join(v);
            anyhow::ensure!(
                path.join("lexicon.tsv").is_file(),
                "no expanded lexicon {}",
                path.display()
            );
            Ok(Some(path))
        }
        other => anyhow::bail!("--lexicon-expansion takes none, latest or vNNNN, not {other:?}"),
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    if args.chinese_only {
        return train_chinese(args);
    }
    let started = Instant::now();
    let models_dir = args
        .models_dir
        .clone()
        .unwrap_or_else(|| args.assets.join("models"));
    let lexicon_expansion = expansion_dir(&args.assets, &args.lexicon_expansion)?;
    let mut config = TrainConfig {
        seed: args.seed,
        epochs: args.epochs,
        augment: args.augment,
        dialogues: args.dialogues,
        lexicon_expansion,
        ..TrainConfig::default()
    };
    args.head.apply(&mut config)?;
    args.text_encoder.check_tunable(args.tuning.tune_encoder)?;
    let (mut plugin, encoder_dir) = args
        .text_encoder
        .load(&args.assets, args.plugin_dir.as_deref())?;
    config.encoder_dir = encoder_dir;
    config.dims.text = text_dim(&plugin)?;
    config.dims.situation = config.dims.text;
    if args.tuning.tune_encoder {
        let tuned = tune(args, &config, &plugin)?;
        plugin = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), Some(&tuned))?;
        config.encoder_dir = Some(relative_to(&tuned, &args.assets));
    }
    let encoder_id = encoder_id(&plugin)?;
    let mut embed = |texts: &[String]| embed(&plugin, texts);
    let encoder = TextEncoder {
        id: &encoder_id,
        embed: &mut embed,
    };
    // The curve is read off fit's progress lines ("epoch N (...): loss X, ...").
    let mut curve = Vec::new();
    let report = train_sentiment(&args.assets, &models_dir, &config, encoder, &mut |m| {
        curve.extend(crate::plots::parse_epoch_line(m));
        eprintln!("{m}")
    })?;
    // The version is already published: a plot that fails is reported, not fatal.
    match crate::plots::write_training_plots(
        &report.version_dir,
        &curve,
        &report.test_confusion,
        &SENTIMENT_LABELS,
    ) {
        Ok(paths) => {
            for p in paths {
                eprintln!("plot: {}", p.display());
            }
        }
        Err(e) => eprintln!("warning: no plots: {e:#}"),
    }

    let metric = |key: &str| report.metrics.get(key).copied().unwrap_or(f64::NAN);
    println!();
    println!(
        "test split ({} tweets)     accuracy   macro-F1",
        metric("test_size")
    );
    for (name, prefix) in [
        ("fusion model", "test"),
        ("VADER baseline", "vader_test"),
        ("model, lexicon only", "lexicon_only_test"),
    ] {
        println!(
            "  {name:24} {:>8.4}   {:>8.4}",
            metric(&format!("{prefix}_accuracy")),
            metric(&format!("{prefix}_macro_f1"))
        );
    }
    let temperature = metric("temperature");
    println!();
    println!(
        "sentiment calibration        test ECE   test NLL   (temperature fitted on the validation split)"
    );
    for (name, suffix) in [
        ("uncalibrated (T = 1)".to_string(), "_uncalibrated"),
        (format!("temperature T = {temperature:.3}"), ""),
    ] {
        println!(
            "  {name:24} {:>8.4}   {:>8.4}",
            metric(&format!("test_ece{suffix}")),
            metric(&format!("test_nll{suffix}"))
        );
    }
    println!(
        "  calibrated top score below 0.5 (fusion's default --min-confidence): {:.1}% of the \
         test split, accuracy {:.4} there, {:.4} on the rest",
        100.0 * metric("test_low_confidence_share"),
        metric("test_low_confidence_accuracy"),
        metric("test_confident_accuracy")
    );
    spot_checks(&args.assets, &report.version_dir, &mut embed)?;
    println!();
    println!("model version  {}", report.version_dir.display());
    train_chinese(args)?;
    println!("took           {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Trains the Chinese text plugin's sentiment model (seconds) and prints its numbers.
pub fn train_chinese(args: &TrainArgs) -> anyhow::Result<()> {
    let dir = empathy_training::lexicon_expansion_zh::default_dir(&args.assets);
    let expansion = expansion_in(&dir, &args.chinese_expansion)?;
    let expansion = expansion.as_deref().map(|d| relative_to(d, &args.assets));
    let zh = train_zh_sentiment(&args.assets, expansion, args.seed, &mut |m| {
        eprintln!("{m}")
    })?;
    println!();
    println!("Chinese, test split                          accuracy");
    println!(
        "  reviews, text-zh sentiment model           {:>8.4}   (reading only which polarity \
         scores higher: {:.4})",
        zh.test_accuracy, zh.test_polar_accuracy
    );
    println!(
        "  reviews, lexicon only (HowNet + DUTIR)     {:>8.4}   ({:.1}% read as neutral)",
        zh.lexicon_test_accuracy,
        100.0 * zh.lexicon_test_neutral
    );
    println!(
        "  news sentences read as neutral             {:>8.4}",
        zh.news_test_neutral
    );
    println!("Chinese model  {} ({})", zh.dir.display(), zh.version);
    Ok(())
}

/// `path` relative to `assets` where it lies under it, else whole.
fn relative_to(path: &Path, assets: &Path) -> String {
    path.strip_prefix(assets)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Tunes the base encoder `plugin` serves; the tuned model's directory.
fn tune(args: &TrainArgs, config: &TrainConfig, plugin: &LoadedPlugin) -> anyhow::Result<PathBuf> {
    let tuning = args.tuning.config(args.seed);
    let base_id = encoder_id(plugin)?;
    let mut base_embed = |texts: &[String]| embed(plugin, texts);
    let base = TextEncoder {
        id: &base_id,
        embed: &mut base_embed,
    };
    let base_dir = args.assets.join(crate::assets::BASE_TEXT_MODEL);
    let tuned = tune_text_encoder(&args.assets, &base_dir, config, &tuning, base, &mut |m| {
        eprintln!("{m}")
    })?;
    Ok(tuned.dir)
}

/// The text plugin, loaded in this process (training needs no running encoder), with
/// the model in `model_dir` [default: the base encoder under the assets].
pub fn load_text_plugin(
    assets: &Path,
    plugin_dir: Option<&Path>,
    model_dir: Option<&Path>,
) -> anyhow::Result<LoadedPlugin> {
    let plugin_dir = match plugin_dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    let path = plugin_dir.join(library_file_name("empathy_plugin_text"));
    let config = PluginConfig {
        assets_dir: assets.to_string_lossy().into_owned(),
        threads: 0,
        settings: model_dir
            .map(|d| ("model_dir".to_string(), d.to_string_lossy().into_owned()))
            .into_iter()
            .collect(),
        ..PluginConfig::default()
    };
    LoadedPlugin::load(&path, &config, None)
        .with_context(|| format!("cannot load the text plugin {}", path.display()))
}

/// "model id@version": the key of the embedding cache.
pub fn encoder_id(plugin: &LoadedPlugin) -> anyhow::Result<String> {
    let model = plugin
        .info()
        .iter()
        .find(|m| m.modality == modality::TEXT)
        .and_then(|m| m.model.clone())
        .context("the text plugin does not describe its model")?;
    Ok(format!("{}@{}", model.id, model.version))
}

/// The width of the text plugin's embeddings.
pub fn text_dim(plugin: &LoadedPlugin) -> anyhow::Result<usize> {
    plugin
        .info()
        .iter()
        .find(|m| m.modality == modality::TEXT)
        .map(|m| m.embedding_dim as usize)
        .context("the text plugin does not describe its embeddings")
}

pub fn embed(plugin: &LoadedPlugin, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(MAX_CHUNK) {
        let request = EncodeRequest::texts(modality::TEXT, chunk.iter().cloned());
        let response = plugin.encode(&request)?;
        out.extend(response.outputs.into_iter().map(|o| o.embedding));
    }
    Ok(out)
}

/// Loads the new version from disk and labels a few obvious sentences with it.
fn spot_checks(assets: &Path, version_dir: &Path, embed: &mut Embed) -> anyhow::Result<()> {
    let model = FusionModel::load(version_dir)?;
    let texts: Vec<String> = SPOT_CHECKS.iter().map(|s| s.to_string()).collect();
    println!();
    for (text, p) in texts
        .iter()
        .zip(predict_texts(assets, &model, embed, &texts)?)
    {
        let best = p.top_sentiment();
        println!(
            "  {:8} {:.2}  {text}",
            SENTIMENT_LABELS[best], p.sentiment[best]
        );
    }
    Ok(())
}

/// `model`'s answers for typed texts: their embeddings from `embed` (the encoder the
/// version was trained with) and the lexicon features of the version's lexicon.
pub fn predict_texts(
    assets: &Path,
    model: &FusionModel,
    embed: &mut Embed,
    texts: &[String],
) -> anyhow::Result<Vec<Prediction>> {
    let lexicon = Lexicon::load(assets)?;
    let expansion = model.lexicon_expansion();
    let inputs: Vec<ModelInputs> = embed(texts)?
        .into_iter()
        .zip(texts)
        .map(|(text, t)| ModelInputs {
            text: Some(text),
            lexicon: lexicon.analyze_with(t, expansion),
            speech: None,
            image: None,
            situations: Vec::new(),
            context: Vec::new(),
            experts: Vec::new(),
            reading: None,
        })
        .collect();
    model.predict(&inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags as a user types them, through clap.
    fn parsed(flags: &[&str]) -> HeadArgs {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            head: HeadArgs,
        }
        let args = std::iter::once("train").chain(flags.iter().copied());
        <Command as clap::Parser>::try_parse_from(args)
            .unwrap()
            .head
    }

    #[test]
    fn head_settings_reach_the_config() {
        let mut config = TrainConfig::default();
        parsed(&[
            "--learning-rate",
            "3e-4",
            "--dropout",
            "0.4",
            "--weight-decay",
            "0.05",
            "--topic-prior-weight",
            "0",
        ])
        .apply(&mut config)
        .unwrap();
        assert_eq!(
            (
                config.learning_rate,
                config.dropout,
                config.weight_decay,
                config.topic_prior_weight
            ),
            (3e-4, 0.4, 0.05, 0.0)
        );
        let mut defaults = TrainConfig::default();
        parsed(&[]).apply(&mut defaults).unwrap();
        assert_eq!(
            format!("{defaults:?}"),
            format!("{:?}", TrainConfig::default())
        );
    }

    #[test]
    fn head_settings_out_of_range_are_refused_by_name() {
        for (typed, flag) in [
            ("--learning-rate=0", "--learning-rate"),
            ("--learning-rate=NaN", "--learning-rate"),
            ("--dropout=1", "--dropout"),
            ("--dropout=-0.1", "--dropout"),
            ("--weight-decay=-1", "--weight-decay"),
            ("--topic-prior-weight=-1", "--topic-prior-weight"),
            ("--topic-prior-weight=inf", "--topic-prior-weight"),
        ] {
            let args = parsed(&[typed]);
            let error = args.apply(&mut TrainConfig::default()).unwrap_err();
            assert!(error.to_string().contains(flag), "{error}");
        }
    }
}
