//! The generator's side of critic training: situations for corpus utterances,
//! generated on the engine once and cached as JSON lines.

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedReceiver;

use super::TrainOptions;
use empathy_bpe::GgufTokenizer;

use crate::{
    engine::{Discarded, Engine, Event, Job, SamplingParams},
    judge::Judge,
    llama::WeightFormat,
    loader, situation_text,
};

/// One utterance's generations, as cached (one JSON line each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generations {
    pub utterance: String,
    pub situations: Vec<String>,
    /// Raw generations the generator's own filter threw away, with the reason.
    pub discarded: Vec<(String, String)>,
}

pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("empathy")
        .join("situations")
}

/// Generates (or reads from the cache) `per_utterance` situations for each utterance.
pub fn generate_cached(
    assets: &Path,
    device: &Device,
    weights: WeightFormat,
    utterances: &[String],
    opts: &TrainOptions,
) -> Result<(Vec<Generations>, String)> {
    let generator = loader::load_generator(assets, device, weights)?;
    let version = generator.version.clone();
    let path = cache_file(&version, opts)?;
    let mut done = read_cache(&path)?;
    let todo: Vec<&String> = utterances
        .iter()
        .filter(|u| !done.contains_key(*u))
        .collect();
    tracing::info!(cached = done.len(), todo = todo.len(), cache = %path.display(), "situations for critic training");
    if !todo.is_empty() {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        generate_into(generator, &todo, opts, &mut file, &mut done)?;
    }
    let out = utterances
        .iter()
        .filter_map(|u| done.get(u).cloned())
        .collect();
    Ok((out, version))
}

/// The cache file for this generator, prompt, seed and count (its directory created).
fn cache_file(generator_version: &str, opts: &TrainOptions) -> Result<PathBuf> {
    let prompt_hash =
        hex::encode(&Sha256::digest(format!("{:?}", situation_text::prompt_turns("{}", &[])))[..4]);
    let dir = opts.cache_dir.clone().unwrap_or_else(cache_root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!(
        "{generator_version}-p{prompt_hash}-s{}-k{}.jsonl",
        opts.seed, opts.per_utterance
    )))
}

/// The cached generations by utterance; none if there is no cache yet. Lines that do
/// not parse (e.g. one cut short) are skipped.
fn read_cache(path: &Path) -> Result<HashMap<String, Generations>> {
    let mut done = HashMap::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines() {
            if let Ok(g) = serde_json::from_str::<Generations>(&line?) {
                done.insert(g.utterance.clone(), g);
            }
        }
    }
    Ok(done)
}

/// Generates for `todo` on the engine, appending each utterance's generations to
/// `file` (and `done`) as soon as its job is over.
fn generate_into(
    generator: loader::Generator,
    todo: &[&String],
    opts: &TrainOptions,
    file: &mut std::fs::File,
    done: &mut HashMap<String, Generations>,
) -> Result<()> {
    let (engine, tokenizer) = generator.start_engine(Judge::None, opts.max_batch, 3, 0.0, None)?;
    let started = Instant::now();
    let mut pending = Vec::new();
    for (i, u) in todo.iter().enumerate() {
        pending.push(Pending::submit(&engine, &tokenizer, u, i, opts)?);
    }
    let total = pending.len();
    let mut finished = 0;
    while !pending.is_empty() {
        let mut i = 0;
        while i < pending.len() {
            if !pending[i].poll()? {
                i += 1;
                continue;
            }
            let g = pending.swap_remove(i).into_generations();
            writeln!(file, "{}", serde_json::to_string(&g)?)?;
            done.insert(g.utterance.clone(), g);
            finished += 1;
            if finished % 20 == 0 || finished == total {
                tracing::info!(
                    finished,
                    total,
                    elapsed_s = started.elapsed().as_secs(),
                    "generating situations"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One utterance's job on the engine: its channels and the situations received so far.
struct Pending {
    utterance: String,
    events: UnboundedReceiver<Event>,
    discarded: UnboundedReceiver<Discarded>,
    situations: Vec<String>,
}

impl Pending {
    /// Submits the `i`th utterance's job; its seed follows from `opts.seed` and `i`.
    fn submit(
        engine: &Engine,
        tokenizer: &GgufTokenizer,
        utterance: &str,
        i: usize,
        opts: &TrainOptions,
    ) -> Result<Self> {
        let prompt = situation_text::prompt_ids(tokenizer, utterance, &[])?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (dtx, discarded) = tokio::sync::mpsc::unbounded_channel();
        engine.submit(
            Job {
                utterance: utterance.to_string(),
                prompt,
                k: opts.per_utterance,
                seed: opts.seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 1),
                sampling: SamplingParams::defaults(48),
                deadline: Instant::now() + Duration::from_secs(86_400),
            },
            tx,
            Some(dtx),
        )?;
        Ok(Self {
            utterance: utterance.to_string(),
            events,
            discarded,
            situations: Vec::new(),
        })
    }

    /// Takes the events that have arrived; true once the job is over.
    fn poll(&mut self) -> Result<bool> {
        let mut over = false;
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                Event::Situation(g) => self.situations.push(g.text),
                Event::Finished { .. } => over = true,
                Event::DeadlineExceeded { .. } => over = true,
                Event::Failed(m) => anyhow::bail!("generation failed: {m}"),
            }
        }
        Ok(over)
    }

    /// The finished job's situations, with what the generator's filter threw away.
    fn into_generations(mut self) -> Generations {
        let mut discarded = Vec::new();
        while let Ok(d) = self.discarded.try_recv() {
            discarded.push((d.text, d.reason.to_string()));
        }
        Generations {
            utterance: self.utterance,
            situations: self.situations,
            discarded,
        }
    }
}
