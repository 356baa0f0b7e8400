//! Dynamic batching: concurrent requests for one modality are merged into one plugin
//! call (the model runs faster on a batch than on many single inputs), with a bounded
//! queue that answers RESOURCE_EXHAUSTED instead of queueing forever, and at once when
//! the work already queued would outlast the caller's deadline (an answer that comes
//! too late is work thrown away, and it makes the queue behind it late too).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use empathy_common::Metrics;
use empathy_common::prometheus::{Histogram, HistogramOpts};
use empathy_plugin_api::{ErrorKind, PluginError, host::LoadedPlugin};
use empathy_proto::v1::{EncodeInput, EncodeRequest, EncodeResponse};
use tokio::sync::{mpsc, oneshot};

use crate::load::Load;

#[derive(Clone, Debug)]
pub struct BatchLimits {
    /// Inputs merged into one call (a request larger than this still runs, alone).
    pub max_inputs: usize,
    /// How long the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Requests waiting before new ones are refused.
    pub max_queue: usize,
    /// The longest estimated wait a new request is admitted to (see `submit`).
    pub max_queue_wait: Duration,
    /// The longest one plugin call may take before the encoder gives up on itself.
    pub max_call: Duration,
}

type Reply = Result<EncodeResponse, PluginError>;

struct Job {
    inputs: Vec<EncodeInput>,
    language: String,
    reply: oneshot::Sender<Reply>,
}

/// The queue in front of one modality's plugin.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    load: Arc<Load>,
    max_queue_wait: Duration,
}

pub enum SubmitError {
    QueueFull(usize),
    /// The queued work would take `wait`, longer than this request may wait: `limit`.
    TooBusy {
        wait: Duration,
        limit: Duration,
    },
    Stopped,
}

impl Batcher {
    pub fn start(
        plugin: Arc<LoadedPlugin>,
        modality: String,
        limits: BatchLimits,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let batch_sizes = Histogram::with_opts(
            HistogramOpts::new("batch_inputs", "inputs per plugin call")
                .const_label("modality", modality.clone())
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        metrics.register(Box::new(batch_sizes.clone()))?;
        let (tx, rx) = mpsc::channel(limits.max_queue.max(1));
        let load = Arc::new(Load::new(limits.max_inputs));
        let looping = Arc::clone(&load);
        let max_queue_wait = limits.max_queue_wait;
        tokio::spawn(batch_loop(
            rx,
            plugin,
            modality,
            limits,
            batch_sizes,
            looping,
        ));
        Ok(Self {
            tx,
            load,
            max_queue_wait,
        })
    }

    /// Queues a request and waits for its share of a batch's result; refuses it at
    /// once if the work ahead of it would take longer than `max_queue_wait` or 80% of
    /// the caller's `deadline` (the rest is for the trip and the model after).
    pub async fn submit(
        &self,
        request: EncodeRequest,
        deadline: Option<Duration>,
    ) -> Result<Reply, SubmitError> {
        let inputs = request.inputs.len();
        let limit = deadline.map_or(self.max_queue_wait, |d| self.max_queue_wait.min(d * 4 / 5));
        let wait = self.load.wait_ahead();
        if wait > limit {
            return Err(SubmitError::TooBusy { wait, limit });
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs: request.inputs,
            language: request.language,
            reply,
        };
        // Counted before it is queued: the batch loop may take it at once.
        self.load.accepted(inputs);
        self.tx.try_send(job).map_err(|e| {
            self.load.withdrawn(inputs);
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    SubmitError::QueueFull(self.tx.max_capacity())
                }
                mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
            }
        })?;
        rx.await.map_err(|_| SubmitError::Stopped)
    }
}

async fn batch_loop(
    mut rx: mpsc::Receiver<Job>,
    plugin: Arc<LoadedPlugin>,
    modality: String,
    limits: BatchLimits,
    batch_sizes: Histogram,
    load: Arc<Load>,
) {
    // A job that would overfill a batch opens the next one.
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut n = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + limits.max_wait;
        while n < limits.max_inputs {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) if n + job.inputs.len() > limits.max_inputs => {
                    held = Some(job);
                    break;
                }
                Ok(Some(job)) => {
                    n += job.inputs.len();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        let plugin = Arc::clone(&plugin);
        let name = modality.clone();
        let sizes = batch_sizes.clone();
        let taken: usize = jobs.iter().map(|j| j.inputs.len()).sum();
        // The model call is CPU-bound: run it off the async threads. One batch at a
        // time per modality; the plugin uses every core it was given.
        load.started(taken);
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || run_batches(&plugin, &name, jobs, &sizes));
        match tokio::time::timeout(limits.max_call, done).await {
            Ok(Ok(ran)) => load.finished(ran, started.elapsed()),
            Ok(Err(err)) => {
                load.finished(0, started.elapsed());
                tracing::error!(%err, "batch worker failed")
            }
            // A call into a plugin cannot be cancelled, and this modality would wait
            // behind it forever: exit, so that the supervisor starts a fresh encoder
            // (fusion degrades meanwhile and reconnects when it is back).
            Err(_) => {
                tracing::error!(
                    %modality,
                    "the plugin did not return within {:?}: exiting so that a fresh encoder \
                     is started (--plugin-timeout-ms)",
                    limits.max_call
                );
                std::process::exit(70);
            }
        }
    }
}

/// Runs what is still wanted of `jobs`; returns how many inputs that was.
fn run_batches(plugin: &LoadedPlugin, modality: &str, jobs: Vec<Job>, sizes: &Histogram) -> usize {
    // Callers that gave up (deadline, cancel) need no answer: skip their work.
    let mut by_language: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    let mut ran = 0;
    for job in jobs.into_iter().filter(|j| !j.reply.is_closed()) {
        ran += job.inputs.len();
        by_language
            .entry(job.language.clone())
            .or_default()
            .push(job);
    }
    for (language, group) in by_language {
        run_group(plugin, modality, &language, group, sizes);
    }
    ran
}

fn run_group(
    plugin: &LoadedPlugin,
    modality: &str,
    language: &str,
    jobs: Vec<Job>,
    sizes: &Histogram,
) {
    let counts: Vec<usize> = jobs.iter().map(|j| j.inputs.len()).collect();
    let (inputs, replies): (Vec<Vec<EncodeInput>>, Vec<_>) =
        jobs.into_iter().map(|j| (j.inputs, j.reply)).unzip();
    let request = EncodeRequest {
        modality: modality.to_string(),
        inputs: inputs.concat(),
        language: language.to_string(),
    };
    sizes.observe(request.inputs.len() as f64);
    let result = plugin.encode(&request);

    match result {
        // The host guarantees one output per input, so the slices line up.
        Ok(mut response) => {
            let mut rest = std::mem::take(&mut response.outputs);
            for (count, reply) in counts.into_iter().zip(replies) {
                let tail = rest.split_off(count.min(rest.len()));
                let _ = reply.send(Ok(EncodeResponse {
                    outputs: rest,
                    model: response.model.clone(),
                }));
                rest = tail;
            }
        }
        // One caller's bad input must not fail the others merged with it: retry each
        // request alone so only the culprit gets the error.
        Err(err) if err.kind == ErrorKind::InvalidInput && replies.len() > 1 => {
            let mut offset = 0;
            for (count, reply) in counts.into_iter().zip(replies) {
                let single = EncodeRequest {
                    modality: request.modality.clone(),
                    inputs: request.inputs[offset..offset + count].to_vec(),
                    language: request.language.clone(),
                };
                offset += count;
                sizes.observe(count as f64);
                let _ = reply.send(plugin.encode(&single));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
