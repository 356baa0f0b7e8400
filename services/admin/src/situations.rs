//! `empathy situations compare`: does imagining situations help? Asks a running
//! situation service for k situations per tweet of a seeded sample of each split
//! (cached, so an interrupted run resumes), embeds them with the text plugin, and
//! trains the model with and without situation tokens on the same tweets and seed.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use empathy_grpc::v1::{GenerateRequest, situation_service_client::SituationServiceClient};
use empathy_training::{TextEncoder, TrainConfig};
use empathy_training::{compare_situations, split_texts};
use futures::{StreamExt, TryStreamExt};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::train::{embed, encoder_id, load_text_plugin};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// The situation service.
    #[arg(long, default_value = "http://127.0.0.1:50071")]
    situations: String,
    /// Situations per tweet.
    #[arg(long, default_value_t = 2)]
    k: u32,
    /// Tweets sampled from the training split (then a quarter as many for validation
    /// and a half as many for test).
    #[arg(long, default_value_t = 600)]
    train: usize,
    /// Seeds the split, the sample, the generation and the training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Requests in flight to the situation service.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Imagined {
    utterance: String,
    situations: Vec<String>,
}

pub async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let config = TrainConfig {
        seed: args.seed,
        ..TrainConfig::default()
    };
    let [train, validation, test] = split_texts(&args.assets, &config)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut sample = Vec::new();
    for (mut texts, n) in [
        (train, args.train),
        (validation, args.train / 4),
        (test, args.train / 2),
    ] {
        texts.shuffle(&mut rng);
        sample.extend(texts.into_iter().take(n));
    }

    let cache = crate::assets::cache_dir()
        .join("situations")
        .join(format!("compare-k{}-seed{}.jsonl", args.k, args.seed));
    let mut done = read_cache(&cache)?;
    let todo: Vec<String> = sample
        .iter()
        .filter(|t| !done.contains_key(*t))
        .cloned()
        .collect();
    eprintln!(
        "{} tweets sampled, {} already imagined ({}), {} to ask {} for",
        sample.len(),
        sample.len() - todo.len(),
        cache.display(),
        todo.len(),
        args.situations
    );
    if !todo.is_empty() {
        imagine(&args, todo, &cache, &mut done).await?;
    }

    let plugin = load_text_plugin(&args.assets, args.plugin_dir.as_deref(), None)?;
    let mut vectors = HashMap::new();
    for t in &sample {
        let Some(texts) = done.get(t) else { continue };
        if !texts.is_empty() {
            vectors.insert(t.clone(), embed(&plugin, texts)?);
        }
    }
    let id = encoder_id(&plugin)?;
    let mut embed_fn = |texts: &[String]| embed(&plugin, texts);
    let encoder = TextEncoder {
        id: &id,
        embed: &mut embed_fn,
    };
    let result = compare_situations(&args.assets, &config, encoder, &vectors, &mut |m| {
        eprintln!("{m}")
    })?;
    println!();
    println!(
        "same seed ({}), same tweets: train {}, validation {}, test {}; k = {}",
        args.seed, result.train_size, result.validation_size, result.test_size, args.k
    );
    println!("test split sample            accuracy   macro-F1");
    for (name, m) in [
        ("without situations", &result.without),
        ("with situations", &result.with),
    ] {
        let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "  {name:26} {:>8.4}   {:>8.4}",
            get("test_accuracy"),
            get("test_macro_f1")
        );
    }
    Ok(())
}

fn read_cache(path: &std::path::Path) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(HashMap::new());
    };
    let mut done = HashMap::new();
    for line in std::io::BufReader::new(file).lines() {
        // A line cut off by an interrupted run is simply asked for again.
        if let Ok(i) = serde_json::from_str::<Imagined>(&line?) {
            done.insert(i.utterance, i.situations);
        }
    }
    Ok(done)
}

async fn imagine(
    args: &CompareArgs,
    todo: Vec<String>,
    cache: &std::path::Path,
    done: &mut HashMap<String, Vec<String>>,
) -> anyhow::Result<()> {
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cache)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    let client = SituationServiceClient::connect(args.situations.clone())
        .await
        .with_context(|| format!("cannot reach the situation service at {}", args.situations))?;
    let total = todo.len();
    let mut results = futures::stream::iter(todo.into_iter().map(|utterance| {
        let mut client = client.clone();
        let (k, seed) = (args.k, args.seed);
        async move {
            let situations: Vec<String> = client
                .generate(GenerateRequest {
                    utterance: utterance.clone(),
                    k,
                    seed,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .map_ok(|s| s.text)
                .try_collect()
                .await?;
            Ok::<_, tonic::Status>(Imagined {
                utterance,
                situations,
            })
        }
    }))
    .buffer_unordered(args.concurrency);
    let mut count = 0;
    let mut failed = 0;
    while let Some(result) = results.next().await {
        count += 1;
        // A tweet the service could not finish is left out of both runs, not fatal.
        let imagined = match result {
            Ok(imagined) => imagined,
            Err(status) => {
                failed += 1;
                eprintln!("skipped a tweet: {}", status.message());
                continue;
            }
        };
        writeln!(out, "{}", serde_json::to_string(&imagined)?)?;
        done.insert(imagined.utterance, imagined.situations);
        if count % 25 == 0 || count == total {
            eprintln!("imagined {count}/{total} ({failed} skipped)");
        }
    }
    Ok(())
}
