//! `empathy generality`: the leave-one-domain-out benchmark. For each topic of the tweet
//! corpus, trains the fusion model without it and tests on it; prints in-domain and
//! out-of-domain macro-F1 side by side, and their means.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use empathy_plugin_api::host::LoadedPlugin;
use empathy_training::generality::{
    DomainFold, FoldTuning, Readings, across_seeds, leave_one_domain_out, load_readings,
    mean_macro_f1,
};
use empathy_training::{TextEncoder, TrainConfig};

use crate::train::{
    BaseEncoder, HeadArgs, TuningArgs, embed, encoder_id, expansion_dir, load_text_plugin, text_dim,
};

#[derive(clap::Args, Debug, Clone)]
pub struct GeneralityArgs {
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Seeds the split, the initial weights and the batch order of every fold.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs the whole benchmark this many times, with seeds --seed, --seed + 1, ...,
    /// and prints the mean and standard deviation of the runs' means: how far chance
    /// alone moves them, to hold a model change's difference against.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    seeds: u64,
    /// Directory of the text plugin library [default: this executable's directory].
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Expanded lexicon for the lexicon features: none, latest or vNNNN.
    #[arg(long, default_value = "none")]
    lexicon_expansion: String,
    /// Contrast examples to make from each fold's training split (see `empathy train`).
    #[arg(long, default_value_t = TrainConfig::default().augment)]
    augment: usize,
    /// With --tune-encoder, each fold tunes its own encoder on that fold's training
    /// tweets only, and trains the model on its embeddings.
    #[command(flatten)]
    tuning: TuningArgs,
    #[command(flatten)]
    head: HeadArgs,
    /// The text encoder every fold reads with (see `empathy train`).
    #[arg(long, value_enum, default_value_t = BaseEncoder::Minilm)]
    text_encoder: BaseEncoder,
    /// Print each fold's training lines.
    #[arg(long)]
    verbose: bool,
    /// Meaning reader readings (JSON lines, as the reader's `read` example writes them
    /// with READINGS=FILE; each names its reader, and all must be one reader's): each
    /// fold is also scored with the reader, by its rule as fusion serves it, on the
    /// rows read, beside the model alone on the same rows.
    #[arg(long)]
    readings: Vec<PathBuf>,
}

pub fn run(args: &GeneralityArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    args.text_encoder.check_tunable(args.tuning.tune_encoder)?;
    let (plugin, encoder_dir) = args
        .text_encoder
        .load(&args.assets, args.plugin_dir.as_deref())?;
    let id = encoder_id(&plugin)?;
    let mut embed = |texts: &[String]| embed(&plugin, texts);
    let mut config = TrainConfig {
        augment: args.augment,
        lexicon_expansion: expansion_dir(&args.assets, &args.lexicon_expansion)?,
        encoder_dir,
        ..TrainConfig::default()
    };
    args.head.apply(&mut config)?;
    config.dims.text = text_dim(&plugin)?;
    config.dims.situation = config.dims.text;
    let base_dir = args.assets.join(crate::assets::BASE_TEXT_MODEL);
    // One loaded plugin per tuned model, loaded when first asked for.
    let mut tuned: Option<(PathBuf, LoadedPlugin)> = None;
    let mut embed_with = |dir: &Path, texts: &[String]| -> anyhow::Result<Vec<Vec<f32>>> {
        if tuned.as_ref().is_none_or(|(d, _)| d != dir) {
            let plugin = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), Some(dir))?;
            tuned = Some((dir.to_path_buf(), plugin));
        }
        match &tuned {
            Some((_, plugin)) => crate::train::embed(plugin, texts),
            None => anyhow::bail!("no tuned encoder loaded"),
        }
    };
    let readings: Readings = load_readings(&args.readings)?;
    let last_seed = args
        .seed
        .checked_add(args.seeds - 1)
        .context("--seed + --seeds is past the largest seed")?;
    let mut runs = Vec::new();
    for seed in args.seed..=last_seed {
        config.seed = seed;
        let tuning_config = args.tuning.config(seed);
        let tuning = args.tuning.tune_encoder.then(|| FoldTuning {
            base_dir: &base_dir,
            config: &tuning_config,
            embed_with: &mut embed_with,
        });
        let encoder = TextEncoder {
            id: &id,
            embed: &mut embed,
        };
        let folds = leave_one_domain_out(
            &args.assets,
            &config,
            encoder,
            tuning,
            &readings,
            &mut |m| {
                if args.verbose || !m.starts_with("epoch") {
                    eprintln!("{m}")
                }
            },
        )?;
        print_folds(args, &id, seed, &folds);
        if !readings.by_text.is_empty() {
            print_read(&readings, &folds);
        }
        runs.push(folds);
    }
    if runs.len() > 1 {
        let ((inside, inside_sd), (outside, outside_sd)) = across_seeds(&runs);
        println!();
        println!(
            "over {} seeds ({}..={}), mean ± sd of the runs' means: in-domain {inside:.4} ± {inside_sd:.4}, out-of-domain {outside:.4} ± {outside_sd:.4}",
            runs.len(),
            args.seed,
            last_seed
        );
    }
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One run's folds and their means.
fn print_folds(args: &GeneralityArgs, id: &str, seed: u64, folds: &[DomainFold]) {
    println!();
    let tuned = if args.tuning.tune_encoder {
        format!(", tuned per fold ({} layers)", args.tuning.tune_layers)
    } else {
        String::new()
    };
    println!(
        "encoder {id}{tuned}, seed {seed}, {} made examples",
        args.augment
    );
    println!(
        "{:12} {:>7} {:>9}   {:>18}   {:>18}",
        "left out", "train", "held out", "in-domain macro-F1", "out-of-domain F1"
    );
    for f in folds {
        println!(
            "{:12} {:>7} {:>9}   {:>18.4}   {:>18.4}",
            f.domain,
            f.train_size,
            f.out_of_domain.examples,
            f.in_domain.macro_f1,
            f.out_of_domain.macro_f1
        );
    }
    let (inside, outside) = mean_macro_f1(folds);
    println!(
        "{:12} {:>7} {:>9}   {inside:>18.4}   {outside:>18.4}",
        "mean", "", ""
    );
}

/// The folds on the rows read: the model alone and with the meaning reader.
fn print_read(readings: &Readings, folds: &[DomainFold]) {
    println!();
    println!(
        "on the rows with a reading: model alone -> with the meaning reader {}, by its rule \
         (macro-F1)",
        readings.reader.title()
    );
    println!(
        "{:12} {:>8} {:>18}   {:>8} {:>18}",
        "left out", "read in", "in-domain", "read out", "out-of-domain"
    );
    let mut sums = [0f64; 4];
    for f in folds {
        let Some(r) = f.read else { continue };
        let (i0, i1) = r.in_domain;
        let (o0, o1) = r.out_of_domain;
        println!(
            "{:12} {:>8} {:>8.4} -> {:.4}   {:>8} {:>8.4} -> {:.4}",
            f.domain, i0.examples, i0.macro_f1, i1.macro_f1, o0.examples, o0.macro_f1, o1.macro_f1
        );
        for (sum, s) in sums.iter_mut().zip([i0, i1, o0, o1]) {
            *sum += s.macro_f1 / folds.len() as f64;
        }
    }
    let [i0, i1, o0, o1] = sums;
    println!(
        "{:12} {:>8} {i0:>8.4} -> {i1:.4}   {:>8} {o0:>8.4} -> {o1:.4}",
        "mean", "", ""
    );
}
