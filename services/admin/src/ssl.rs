//! `empathy ssl compare`: does self-training with pseudo-labels help? Trains the fusion
//! network on 100, 500 and all labelled tweets of the training split, with and without
//! self-training on the rest of it (labels hidden), and prints test-split scores.
//! Runs on the cached corpus embeddings; the text plugin is loaded only if they are
//! not cached.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use empathy_model::checkpoint::read_version;
use empathy_model::latest_version;
use empathy_plugin_api::host::LoadedPlugin;
use empathy_training::{SelfTrainingConfig, SelfTrainingRow, compare_self_training};
use empathy_training::{TextEncoder, TrainConfig};

use crate::train::{embed, encoder_id, load_text_plugin};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// Seeds the split, the labelled subsets, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Labelled-subset sizes, comma-separated; "all" = the whole training split.
    #[arg(long, value_delimiter = ',', default_value = "100,500,all")]
    labels: Vec<String>,
    /// Least max-probability for a pseudo-label to be kept.
    #[arg(long, default_value_t = SelfTrainingConfig::default().tau)]
    tau: f32,
    /// Self-training rounds (each student is the next round's teacher).
    #[arg(long, default_value_t = SelfTrainingConfig::default().rounds)]
    rounds: usize,
    /// The encoder id that keys the embedding cache [default: the latest model
    /// version's, else the text plugin's].
    #[arg(long)]
    encoder_id: Option<String>,
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
}

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let label_counts = args
        .labels
        .iter()
        .map(|l| match l.trim() {
            "all" => Ok(None),
            n => n
                .parse::<usize>()
                .map(Some)
                .with_context(|| format!("--labels: {n:?} is neither a count nor \"all\"")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = SelfTrainingConfig {
        train: TrainConfig {
            seed: args.seed,
            ..TrainConfig::default()
        },
        label_counts,
        tau: args.tau,
        rounds: args.rounds,
        ..SelfTrainingConfig::default()
    };

    // The plugin is loaded on the first call of the encoder, i.e. only on a cache miss.
    let mut plugin: Option<LoadedPlugin> = None;
    let id = match &args.encoder_id {
        Some(id) => id.clone(),
        None => match latest_encoder(&args.assets) {
            Some(id) => id,
            None => {
                let loaded = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), None)?;
                let id = encoder_id(&loaded)?;
                plugin = Some(loaded);
                id
            }
        },
    };
    let mut lazy_embed = |texts: &[String]| -> anyhow::Result<Vec<Vec<f32>>> {
        let loaded = match plugin.take() {
            Some(loaded) => loaded,
            None => {
                eprintln!("embeddings not cached: loading the text plugin");
                let loaded = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), None)?;
                let actual = encoder_id(&loaded)?;
                anyhow::ensure!(
                    actual == id,
                    "the text plugin is {actual}, the cache key says {id} (pass --encoder-id)"
                );
                loaded
            }
        };
        let vectors = embed(&loaded, texts);
        plugin = Some(loaded);
        vectors
    };
    let encoder = TextEncoder {
        id: &id,
        embed: &mut lazy_embed,
    };
    let rows = compare_self_training(&args.assets, &config, encoder, &mut |m| eprintln!("{m}"))?;
    print_table(&rows, &config);
    println!();
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The encoder the latest model version was trained with, if there is one.
fn latest_encoder(assets: &Path) -> Option<String> {
    let dir = latest_version(&assets.join("models")).ok()?;
    let (manifest, _) = read_version(&dir).ok()?;
    Some(manifest.training.encoder)
}

fn print_table(rows: &[SelfTrainingRow], config: &SelfTrainingConfig) {
    println!();
    println!(
        "test split; self-training: tau {}, class-balanced, {} rounds, student dropout {} \
         and text dropout {}",
        config.tau, config.rounds, config.student_dropout, config.student_text_dropout
    );
    println!(
        "{:>8} {:>10}  {:>17}  {:>17}  {:>17}  {:>24}",
        "labels",
        "unlabelled",
        "baseline acc/F1",
        "round 1 acc/F1",
        "round 2+ acc/F1",
        "pseudo-labels (right)"
    );
    for row in rows {
        let scores =
            |s: &empathy_training::Scores| format!("{:.4} / {:.4}", s.accuracy, s.macro_f1);
        let (first, last, pseudo) = match (row.rounds.first(), row.rounds.last()) {
            (Some(first), Some(last)) => (
                scores(&first.test),
                if row.rounds.len() > 1 {
                    scores(&last.test)
                } else {
                    "-".into()
                },
                row.rounds
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({:.0}%)",
                            r.pseudo_per_class.iter().sum::<usize>(),
                            100.0 * r.pseudo_accuracy
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            _ => {
                let na = "n/a (no unlabelled data)".to_string();
                (na.clone(), na, "-".into())
            }
        };
        println!(
            "{:>8} {:>10}  {:>17}  {:>17}  {:>17}  {:>24}   ({:.0} s)",
            row.labelled,
            row.unlabelled,
            scores(&row.baseline),
            first,
            last,
            pseudo,
            row.seconds
        );
    }
}
