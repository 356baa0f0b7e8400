//! The generation engine: one thread owns the model and decodes every active sequence
//! together, one token per step (continuous batching). A request's prompt is prefilled
//! once and its k situations fork that cache; a finished sequence frees its slot for
//! the next waiting one at the next step. Requests whose caller went away are dropped
//! at the next step; requests past their deadline end with what they have.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use candle_core::{IndexOp, Tensor};
use tokio::sync::mpsc::UnboundedSender;

use empathy_bpe::GgufTokenizer;

use crate::{
    feeling::FeelingReader,
    judge::{Judge, judge},
    llama::{Model, SeqCache},
    pmi::{neutral_context, situation_pass, utterance_context},
    prefix::CachedPrefix,
    sampler::Sampler,
    situation_text,
};

/// Sampling settings of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    /// Most tokens per situation.
    pub max_tokens: usize,
    /// Penalty on the tokens already in the situation (candle's example uses 1.1).
    pub repeat_penalty: f32,
}

impl SamplingParams {
    /// The service's defaults (temperature 0.8, top-p 0.95, repeat penalty 1.1) with
    /// at most `max_tokens` per situation.
    pub fn defaults(max_tokens: usize) -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.95,
            max_tokens,
            repeat_penalty: 1.1,
        }
    }
}

/// One request: k situations for one prompt.
#[derive(Debug, Clone)]
pub struct Job {
    pub utterance: String,
    pub prompt: Vec<u32>,
    pub k: usize,
    pub seed: u64,
    pub sampling: SamplingParams,
    pub deadline: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Which of the k situations (0-based): same seed, same index, same text.
    pub index: u32,
    pub text: String,
    /// In [0, 1]; 0.5 when the engine runs without a critic.
    pub critic_score: f32,
    pub tokens: u32,
    pub generation_ms: f32,
    /// The emotion the generator reads off the situation (EMOTION_LABELS order);
    /// None if reading failed.
    pub emotions: Option<[f32; 7]>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Situation(Generated),
    /// Every situation is done (some may have been given up: `produced` < k).
    Finished {
        produced: usize,
    },
    DeadlineExceeded {
        produced: usize,
    },
    Failed(String),
}

/// A raw generation the engine threw away, for critic training (degenerate examples).
#[derive(Debug, Clone)]
pub struct Discarded {
    pub text: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Tries per situation (the first one included) before it is given up.
    pub max_attempts: u32,
    /// Situations the critic scores below this are regenerated (within the attempts).
    pub critic_threshold: f32,
    /// Ids most prompts start with (system turn, examples): prefilled once, and each
    /// prompt that starts with them prefills only the rest. Empty = none.
    pub shared_prefix: Vec<u32>,
}

/// Prometheus series of the engine.
#[derive(Clone)]
pub struct EngineMetrics {
    pub tokens: prometheus::IntCounter,
    pub batch_size: prometheus::Histogram,
    pub rejected: prometheus::IntCounterVec,
    pub cancelled: prometheus::IntCounter,
}

impl EngineMetrics {
    pub fn new() -> Result<Self> {
        Ok(Self {
            tokens: prometheus::IntCounter::new(
                "situation_tokens_total",
                "tokens generated (all attempts)",
            )?,
            batch_size: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "situation_batch_size",
                    "sequences decoded together per step",
                )
                .buckets(vec![1., 2., 4., 8., 16., 32., 64.]),
            )?,
            rejected: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "situation_rejected_total",
                    "generations thrown away, by reason",
                ),
                &["reason"],
            )?,
            cancelled: prometheus::IntCounter::new(
                "situation_cancelled_total",
                "requests dropped because the caller went away",
            )?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.tokens.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.rejected.clone()),
            Box::new(self.cancelled.clone()),
        ]
    }
}

struct Submission {
    job: Job,
    out: UnboundedSender<Event>,
    discarded: Option<UnboundedSender<Discarded>>,
}

/// Handle to the engine thread; cheap to clone. The thread ends when every handle
/// is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Submission>,
}

impl Engine {
    pub fn start(
        model: Model,
        tokenizer: Arc<GgufTokenizer>,
        judge: Judge,
        options: EngineOptions,
        metrics: Option<EngineMetrics>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stops = StopTokens::new(&tokenizer)?;
        let feelings = FeelingReader::new(&model, &tokenizer)?;
        // Only the PMI judge compares against the neutral context.
        let neutral = judge
            .needs_pmi()
            .then(|| neutral_context(&model, &tokenizer))
            .transpose()?;
        let shared = if options.shared_prefix.is_empty() {
            None
        } else {
            let mut cache = model.new_cache(options.shared_prefix.len());
            model.prefill(&options.shared_prefix, &mut cache)?;
            Some((options.shared_prefix.clone(), cache))
        };
        let worker = Worker {
            shared,
            neutral,
            model,
            tokenizer,
            judge,
            feelings,
            options,
            metrics,
            stops,
            jobs: HashMap::new(),
            order: VecDeque::new(),
            seqs: Vec::new(),
            next_id: 0,
        };
        std::thread::Builder::new()
            .name("situation-engine".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self { tx })
    }

    /// Queues a job; its events arrive on `out`. Dropping the receiver cancels it.
    pub fn submit(
        &self,
        job: Job,
        out: UnboundedSender<Event>,
        discarded: Option<UnboundedSender<Discarded>>,
    ) -> Result<()> {
        self.tx
            .send(Submission {
                job,
                out,
                discarded,
            })
            .map_err(|_| anyhow::anyhow!("the generation engine has stopped"))
    }

    /// Generates one short situation for `prompt` and waits for it: the first
    /// request after a start otherwise pays for cold caches and first allocations
    /// (enough to miss a caller's deadline).
    pub async fn warm_up(&self, utterance: &str, prompt: Vec<u32>) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.submit(
            Job {
                utterance: utterance.to_string(),
                prompt,
                k: 1,
                seed: 1,
                sampling: SamplingParams::defaults(12),
                deadline: Instant::now() + Duration::from_secs(120),
            },
            tx,
            None,
        )?;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Situation(_) => {}
                Event::Finished { .. } | Event::DeadlineExceeded { .. } => return Ok(()),
                Event::Failed(m) => anyhow::bail!("the warm-up generation failed: {m}"),
            }
        }
        anyhow::bail!("the generation engine stopped during the warm-up")
    }
}

/// Tokens that end a situation: end of turn, end of text, or any token holding a newline.
struct StopTokens {
    stop: Vec<bool>,
}

impl StopTokens {
    fn new(tok: &GgufTokenizer) -> Result<Self> {
        let mut stop = vec![false; tok.vocab_size()];
        for (id, s) in stop.iter_mut().enumerate() {
            let id = id as u32;
            *s = id == tok.im_end || id == tok.eos || tok.decode(&[id])?.contains('\n');
        }
        if let Some(id) = tok.control("<|endoftext|>") {
            stop[id as usize] = true;
        }
        Ok(Self { stop })
    }

    fn is_stop(&self, id: u32) -> bool {
        self.stop.get(id as usize).copied().unwrap_or(true)
    }
}

struct ActiveJob {
    job: Job,
    out: UnboundedSender<Event>,
    discarded: Option<UnboundedSender<Discarded>>,
    /// The prefilled prompt and the logits after it.
    prefix: Option<(SeqCache, Tensor)>,
    /// `utterance_context` prefilled: every situation is scored and read after it.
    context: Option<CachedPrefix>,
    utterance_embedding: Option<Vec<f32>>,
    /// Slots (situation indices) waiting for a sequence, with their attempt number.
    waiting: VecDeque<(usize, u32)>,
    running: usize,
    produced: usize,
}

impl ActiveJob {
    fn settled(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }
}

struct Sequence {
    job: u64,
    slot: usize,
    attempt: u32,
    cache: SeqCache,
    tokens: Vec<u32>,
    sampler: Sampler,
    started: Instant,
    max_tokens: usize,
    repeat_penalty: f32,
    /// Some(finished_naturally) once it should stop.
    done: Option<bool>,
}

impl Sequence {
    /// Appends a sampled token, or marks the sequence done.
    fn push(&mut self, token: u32, stops: &StopTokens, tok: &GgufTokenizer) -> Result<()> {
        if stops.is_stop(token) {
            self.done = Some(true);
            return Ok(());
        }
        self.tokens.push(token);
        if self.tokens.len() >= self.max_tokens || self.cache.len() + 1 >= self.cache.capacity() {
            self.done = Some(false);
            return Ok(());
        }
        // One sentence is all we keep: stop once one has ended and the next begins.
        let text = tok.decode(&self.tokens)?;
        let trimmed = text.trim_end();
        if trimmed.len() < text.len() && trimmed.ends_with(['.', '!', '?']) {
            self.done = Some(true);
        }
        Ok(())
    }
}

struct Worker {
    /// The shared prompt prefix and its cache.
    shared: Option<(Vec<u32>, SeqCache)>,
    /// `neutral_context` prefilled, when the judge is PMI.
    neutral: Option<CachedPrefix>,
    model: Model,
    tokenizer: Arc<GgufTokenizer>,
    judge: Judge,
    feelings: FeelingReader,
    options: EngineOptions,
    metrics: Option<EngineMetrics>,
    stops: StopTokens,
    jobs: HashMap<u64, ActiveJob>,
    order: VecDeque<u64>,
    seqs: Vec<Sequence>,
    next_id: u64,
}

/// Seed of one attempt at one situation, derived from the request's seed
/// (splitmix64), so that situation i is the same whatever else is being decoded.
pub fn derive_seed(seed: u64, slot: usize, attempt: u32) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(seed ^ mix(((slot as u64) << 32) | attempt as u64))
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Submission>) {
        loop {
            if self.seqs.is_empty() && !self.has_waiting_slots() {
                match rx.recv() {
                    Ok(s) => self.add(s),
                    Err(_) => return,
                }
            }
            while let Ok(s) = rx.try_recv() {
                self.add(s);
            }
            self.drop_cancelled_and_late();
            self.admit();
            if !self.seqs.is_empty()
                && let Err(e) = self.step()
            {
                self.fail_all(&format!("generation failed: {e:#}"));
            }
            self.finish_sequences();
        }
    }

    fn add(&mut self, s: Submission) {
        let id = self.next_id;
        self.next_id += 1;
        let waiting = (0..s.job.k).map(|slot| (slot, 0)).collect();
        self.jobs.insert(
            id,
            ActiveJob {
                job: s.job,
                out: s.out,
                discarded: s.discarded,
                prefix: None,
                context: None,
                utterance_embedding: None,
                waiting,
                running: 0,
                produced: 0,
            },
        );
        self.order.push_back(id);
    }

    fn has_waiting_slots(&self) -> bool {
        self.jobs.values().any(|j| !j.waiting.is_empty())
    }

    fn remove_job(&mut self, id: u64) {
        self.jobs.remove(&id);
        self.order.retain(|j| *j != id);
        self.seqs.retain(|s| s.job != id);
    }

    fn drop_cancelled_and_late(&mut self) {
        let now = Instant::now();
        let ids: Vec<u64> = self.order.iter().copied().collect();
        for id in ids {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.out.is_closed() {
                if let Some(m) = &self.metrics {
                    m.cancelled.inc();
                }
                tracing::debug!(job = id, "caller went away; generation stopped");
                self.remove_job(id);
            } else if now >= job.job.deadline {
                let _ = job.out.send(Event::DeadlineExceeded {
                    produced: job.produced,
                });
                self.remove_job(id);
            }
        }
    }

    /// Starts sequences for waiting slots, oldest request first, while the batch has room.
    fn admit(&mut self) {
        let ids: Vec<u64> = self.order.iter().copied().collect();
        for id in ids {
            while self.seqs.len() < self.options.max_batch {
                let Some(job) = self.jobs.get_mut(&id) else {
                    break;
                };
                let Some((slot, attempt)) = job.waiting.pop_front() else {
                    break;
                };
                match self.start_sequence(id, slot, attempt) {
                    Ok(seq) => {
                        if let Some(job) = self.jobs.get_mut(&id) {
                            job.running += 1;
                        }
                        self.seqs.push(seq);
                    }
                    Err(e) => {
                        if let Some(job) = self.jobs.get(&id) {
                            let _ = job.out.send(Event::Failed(format!("{e:#}")));
                        }
                        self.remove_job(id);
                        break;
                    }
                }
            }
            if self.seqs.len() >= self.options.max_batch {
                break;
            }
        }
    }

    fn start_sequence(&mut self, id: u64, slot: usize, attempt: u32) -> Result<Sequence> {
        let job = self
            .jobs
            .get_mut(&id)
            .ok_or_else(|| anyhow::anyhow!("no job"))?;
        if job.prefix.is_none() {
            let prompt = &job.job.prompt;
            let (mut cache, rest) = match &self.shared {
                Some((ids, shared)) if prompt.len() > ids.len() && prompt.starts_with(ids) => (
                    self.model.fork_cache(shared, prompt.len())?,
                    &prompt[ids.len()..],
                ),
                _ => (self.model.new_cache(prompt.len()), &prompt[..]),
            };
            let logits = self.model.prefill(rest, &mut cache)?;
            job.prefix = Some((cache, logits));
            job.context = Some(utterance_context(
                &self.model,
                &self.tokenizer,
                &job.job.utterance,
            )?);
            if let Judge::Trained(scorer) = &self.judge {
                job.utterance_embedding = Some(scorer.embed(&job.job.utterance)?);
            }
        }
        let Some((prefix, logits)) = &job.prefix else {
            anyhow::bail!("no prefix");
        };
        let capacity = prefix.len() + job.job.sampling.max_tokens + 1;
        let cache = self.model.fork_cache(prefix, capacity)?;
        let p = &job.job.sampling;
        let mut sampler = Sampler::new(
            derive_seed(job.job.seed, slot, attempt),
            p.temperature,
            p.top_p,
        );
        let first = sampler.sample(logits)?;
        let mut seq = Sequence {
            job: id,
            slot,
            attempt,
            cache,
            tokens: Vec::new(),
            sampler,
            started: Instant::now(),
            max_tokens: p.max_tokens,
            repeat_penalty: p.repeat_penalty,
            done: None,
        };
        if let Some(m) = &self.metrics {
            m.tokens.inc();
        }
        seq.push(first, &self.stops, &self.tokenizer)?;
        Ok(seq)
    }

    fn step(&mut self) -> Result<()> {
        let mut tokens = Vec::with_capacity(self.seqs.len());
        let mut caches = Vec::with_capacity(self.seqs.len());
        let mut index = Vec::with_capacity(self.seqs.len());
        for (i, seq) in self.seqs.iter_mut().enumerate() {
            if seq.done.is_none()
                && let Some(&last) = seq.tokens.last()
            {
                tokens.push(last);
                caches.push(&mut seq.cache);
                index.push(i);
            }
        }
        if tokens.is_empty() {
            return Ok(());
        }
        if let Some(m) = &self.metrics {
            m.batch_size.observe(tokens.len() as f64);
        }
        let logits = self.model.step(&tokens, &mut caches)?;
        for (row, i) in index.into_iter().enumerate() {
            let seq = &mut self.seqs[i];
            let penalty = seq.repeat_penalty;
            let logits = logits.i(row)?;
            let logits = if penalty == 1.0 {
                logits
            } else {
                let start = seq.tokens.len().saturating_sub(64);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    penalty,
                    &seq.tokens[start..],
                )?
            };
            let token = seq.sampler.sample(&logits)?;
            seq.push(token, &self.stops, &self.tokenizer)?;
        }
        if let Some(m) = &self.metrics {
            m.tokens.inc_by(tokens.len() as u64);
        }
        Ok(())
    }

    fn finish_sequences(&mut self) {
        let mut i = 0;
        while i < self.seqs.len() {
            if self.seqs[i].done.is_none() {
                i += 1;
                continue;
            }
            let seq = self.seqs.swap_remove(i);
            self.finish(seq);
        }
        let settled: Vec<u64> = self
            .order
            .iter()
            .copied()
            .filter(|id| self.jobs.get(id).is_some_and(ActiveJob::settled))
            .collect();
        for id in settled {
            if let Some(job) = self.jobs.get(&id) {
                let _ = job.out.send(Event::Finished {
                    produced: job.produced,
                });
            }
            self.remove_job(id);
        }
    }

    fn finish(&mut self, seq: Sequence) {
        let Some(job) = self.jobs.get_mut(&seq.job) else {
            return;
        };
        job.running -= 1;
        let finished = seq.done.unwrap_or(false);
        let raw = self.tokenizer.decode(&seq.tokens).unwrap_or_default();
        let verdict = match situation_text::clean(&raw, &job.job.utterance, finished) {
            Err(r) => Err(r.as_str()),
            Ok(text) => {
                // One pass over the situation gives its PMI and its emotion reading.
                let pass = job
                    .context
                    .as_ref()
                    .context("the utterance's context was not prefilled")
                    .and_then(|context| {
                        situation_pass(
                            &self.model,
                            &self.tokenizer,
                            context,
                            self.neutral.as_ref(),
                            &text,
                            self.feelings.tail(),
                        )
                    })
                    .inspect_err(|e| tracing::warn!(error = %e, "scoring the situation failed"))
                    .ok();
                let emotions = pass.as_ref().and_then(|pass| {
                    self.feelings
                        .read_pass(&self.model, pass)
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "reading the situation's emotion failed"),
                        )
                        .ok()
                });
                let pmi = pass.and_then(|p| p.pmi);
                match judge(&self.judge, job.utterance_embedding.as_deref(), pmi, &text) {
                    Ok(score) if score >= self.options.critic_threshold => {
                        Ok((text, score, emotions))
                    }
                    Ok(_) => Err("critic"),
                    Err(e) => {
                        tracing::warn!(error = %e, "critic failed; keeping the situation unscored");
                        Ok((text, 0.5, emotions))
                    }
                }
            }
        };
        match verdict {
            Ok((text, critic_score, emotions)) => {
                job.produced += 1;
                let _ = job.out.send(Event::Situation(Generated {
                    index: seq.slot as u32,
                    text,
                    critic_score,
                    tokens: seq.tokens.len() as u32,
                    generation_ms: seq.started.elapsed().as_secs_f32() * 1000.,
                    emotions,
                }));
            }
            Err(reason) => {
                if let Some(m) = &self.metrics {
                    m.rejected.with_label_values(&[reason]).inc();
                }
                if let Some(d) = &job.discarded {
                    let _ = d.send(Discarded { text: raw, reason });
                }
                if seq.attempt + 1 < self.options.max_attempts {
                    job.waiting.push_back((seq.slot, seq.attempt + 1));
                } else {
                    tracing::info!(
                        slot = seq.slot,
                        reason,
                        "situation given up after its attempts"
                    );
                }
            }
        }
    }

    fn fail_all(&mut self, message: &str) {
        tracing::error!(message, "generation step failed");
        for job in self.jobs.values() {
            let _ = job.out.send(Event::Failed(message.to_string()));
        }
        self.jobs.clear();
        self.order.clear();
        self.seqs.clear();
    }
}

/// How long a request may run: the caller's deadline, capped by the server's.
pub fn deadline(caller: Option<Duration>, server_max: Duration) -> Instant {
    Instant::now() + caller.map_or(server_max, |c| c.min(server_max))
}
