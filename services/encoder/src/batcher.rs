//! Dynamic batching: concurrent requests for one modality are merged into one plugin
//! call (the model runs faster on a batch than on many single inputs), with a bounded
//! queue that answers RESOURCE_EXHAUSTED instead of queueing forever.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use empathy_common::Metrics;
use empathy_common::prometheus::{Histogram, HistogramOpts};
use empathy_plugin_api::{ErrorKind, PluginError, host::LoadedPlugin};
use empathy_proto::v1::{EncodeInput, EncodeRequest, EncodeResponse};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Debug)]
pub struct BatchLimits {
    /// Inputs merged into one call (a request larger than this still runs, alone).
    pub max_inputs: usize,
    /// How long the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Requests waiting before new ones are refused.
    pub max_queue: usize,
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
}

pub enum SubmitError {
    QueueFull(usize),
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
        tokio::spawn(batch_loop(rx, plugin, modality, limits, batch_sizes));
        Ok(Self { tx })
    }

    /// Queues a request and waits for its share of a batch's result.
    pub async fn submit(&self, request: EncodeRequest) -> Result<Reply, SubmitError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs: request.inputs,
            language: request.language,
            reply,
        };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull(self.tx.max_capacity()),
            mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
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
        let modality = modality.clone();
        let sizes = batch_sizes.clone();
        // The model call is CPU-bound: run it off the async threads. One batch at a
        // time per modality; the plugin uses every core it was given.
        let done =
            tokio::task::spawn_blocking(move || run_batches(&plugin, &modality, jobs, &sizes));
        if let Err(err) = done.await {
            tracing::error!(%err, "batch worker failed");
        }
    }
}

fn run_batches(plugin: &LoadedPlugin, modality: &str, jobs: Vec<Job>, sizes: &Histogram) {
    // Callers that gave up (deadline, cancel) need no answer: skip their work.
    let mut by_language: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for job in jobs.into_iter().filter(|j| !j.reply.is_closed()) {
        by_language
            .entry(job.language.clone())
            .or_default()
            .push(job);
    }
    for (language, group) in by_language {
        run_group(plugin, modality, &language, group, sizes);
    }
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
