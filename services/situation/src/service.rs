//! The gRPC face: validates a GenerateRequest, builds the prompt, takes a request slot
//! (RESOURCE_EXHAUSTED when none is free), hands the job to the engine and streams
//! each situation as the engine finishes it.

use std::{pin::Pin, sync::Arc, time::Duration};

use empathy_common::{Metrics, status::check_len};
use empathy_grpc::v1::{
    GenerateRequest, LabelScore, ModelRef, Situation, SituationInfo, SituationInfoRequest,
    situation_service_server::SituationService,
};
use empathy_proto::EMOTION_LABELS;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::{Request, Response, Status};

use empathy_bpe::GgufTokenizer;

use crate::{
    engine::{self, Engine, Event, Job, SamplingParams},
    situation_text,
};

/// Request limits and defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_k: u32,
    pub max_utterance_chars: usize,
    pub max_context_turns: usize,
    pub max_tokens: u32,
    pub max_prompt_tokens: usize,
    pub default_temperature: f32,
    pub default_top_p: f32,
    pub default_max_tokens: u32,
    pub repeat_penalty: f32,
    /// Longest a request may run, whatever the caller's deadline.
    pub max_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_k: 8,
            max_utterance_chars: 1000,
            max_context_turns: 64,
            max_tokens: 128,
            max_prompt_tokens: 1536,
            default_temperature: 0.8,
            default_top_p: 0.95,
            default_max_tokens: 48,
            repeat_penalty: 1.1,
            max_duration: Duration::from_secs(60),
        }
    }
}

pub struct Info {
    pub generator: ModelRef,
    pub critic: Option<ModelRef>,
    pub device: String,
}

#[derive(Clone)]
pub struct Situations {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    tokenizer: Arc<GgufTokenizer>,
    limits: Limits,
    slots: Arc<Semaphore>,
    max_requests: usize,
    info: Info,
    metrics: Metrics,
}

impl Situations {
    pub fn new(
        engine: Engine,
        tokenizer: Arc<GgufTokenizer>,
        limits: Limits,
        max_requests: usize,
        info: Info,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                tokenizer,
                limits,
                slots: Arc::new(Semaphore::new(max_requests)),
                max_requests,
                info,
                metrics,
            }),
        }
    }
}

/// A validated request with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub k: usize,
    pub seed: u64,
    pub sampling: SamplingParams,
}

/// Checks a request against the limits; every refusal names the field and the range.
pub fn validate(r: &GenerateRequest, limits: &Limits) -> Result<Validated, Status> {
    if r.utterance.trim().is_empty() {
        return Err(Status::invalid_argument(
            "utterance is empty: send what the person said",
        ));
    }
    check_len("utterance", &r.utterance, limits.max_utterance_chars)?;
    if r.context.len() > limits.max_context_turns {
        return Err(Status::invalid_argument(format!(
            "context has {} turns; the limit is {}",
            r.context.len(),
            limits.max_context_turns
        )));
    }
    for turn in &r.context {
        check_len("a context turn", turn, limits.max_utterance_chars)?;
    }
    if !writes_in(&r.language) {
        return Err(Status::failed_precondition(format!(
            "the generator (SmolLM2-135M-Instruct) reads and writes English only, and the \
             utterance is in {:?}: no situations for it",
            r.language.trim()
        )));
    }
    if r.k == 0 || r.k > limits.max_k {
        return Err(Status::invalid_argument(format!(
            "k is {}; ask for 1 to {} situations",
            r.k, limits.max_k
        )));
    }
    let temperature = positive_up_to(
        "temperature",
        r.temperature,
        2.0,
        limits.default_temperature,
    )?;
    let top_p = positive_up_to("top_p", r.top_p, 1.0, limits.default_top_p)?;
    let max_tokens = match r.max_tokens {
        0 => limits.default_max_tokens,
        n if n <= limits.max_tokens => n,
        n => {
            return Err(Status::invalid_argument(format!(
                "max_tokens is {n}; the limit is {} per situation",
                limits.max_tokens
            )));
        }
    };
    let seed = if r.seed == 0 { rand::random() } else { r.seed };
    Ok(Validated {
        k: r.k as usize,
        seed,
        sampling: SamplingParams {
            temperature: temperature as f64,
            top_p: top_p as f64,
            max_tokens: max_tokens as usize,
            repeat_penalty: limits.repeat_penalty,
        },
    })
}

/// Whether the generator can imagine situations for an utterance in `language` (a
/// BCP-47 tag; empty = not known, taken as English).
fn writes_in(language: &str) -> bool {
    let primary = language.trim().split(['-', '_']).next().unwrap_or("");
    primary.is_empty() || primary.eq_ignore_ascii_case("en")
}

/// A sampling parameter in (0, `max`], with 0 standing for `default`; a refusal names
/// the field and the range.
fn positive_up_to(field: &str, value: f32, max: f32, default: f32) -> Result<f32, Status> {
    match value {
        0.0 => Ok(default),
        v if v > 0.0 && v <= max => Ok(v),
        v => Err(Status::invalid_argument(format!(
            "{field} is {v}; it must be in (0, {max}], or 0 for the default ({default})"
        ))),
    }
}

type SituationStream = Pin<Box<dyn Stream<Item = Result<Situation, Status>> + Send>>;

impl Inner {
    async fn generate(&self, request: Request<GenerateRequest>) -> Result<SituationStream, Status> {
        let timeout = empathy_common::deadline::grpc_timeout(request.metadata());
        let r = request.into_inner();
        let v = validate(&r, &self.limits)?;
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the situation generator is saturated ({} requests in progress or queued); retry with backoff",
                self.max_requests
            ))
        })?;
        let prompt = situation_text::prompt_ids(&self.tokenizer, &r.utterance, &r.context)
            .map_err(|e| empathy_common::status::internal("building the prompt", e))?;
        if prompt.len() > self.limits.max_prompt_tokens {
            return Err(Status::invalid_argument(format!(
                "the utterance and context make a prompt of {} tokens; the limit is {}",
                prompt.len(),
                self.limits.max_prompt_tokens
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job {
            utterance: r.utterance.trim().to_string(),
            prompt,
            k: v.k,
            seed: v.seed,
            sampling: v.sampling,
            deadline: engine::deadline(timeout, self.limits.max_duration),
        };
        self.engine
            .submit(job, tx, None)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // Open until the stream ends, so the trace shows the whole generation (the
        // request's own span ends when the stream starts).
        let span = tracing::info_span!("situations", otel.name = "generate situations", k = v.k);
        Ok(Box::pin(situation_stream(rx, permit, v.k, span)))
    }
}

/// Engine events as gRPC stream items. Holds the request's slot (and `span`): when the
/// caller cancels, tonic drops the stream, the slot frees and the engine sees the closed
/// channel and stops decoding at its next step.
fn situation_stream(
    rx: mpsc::UnboundedReceiver<Event>,
    permit: OwnedSemaphorePermit,
    k: usize,
    span: tracing::Span,
) -> impl Stream<Item = Result<Situation, Status>> + Send {
    futures::stream::unfold(Some((rx, permit, span)), move |state| async move {
        let (mut rx, permit, span) = state?;
        let item = match rx.recv().await {
            Some(Event::Situation(g)) => Ok(Situation {
                index: g.index,
                text: g.text,
                critic_score: g.critic_score,
                tokens: g.tokens,
                generation_ms: g.generation_ms,
                emotions: g.emotions.map_or_else(Vec::new, |p| {
                    EMOTION_LABELS
                        .iter()
                        .zip(p)
                        .map(|(l, score)| LabelScore {
                            label: l.to_string(),
                            score,
                        })
                        .collect()
                }),
            }),
            Some(Event::Finished { .. }) | None => return None,
            Some(Event::DeadlineExceeded { produced }) => Err(Status::deadline_exceeded(format!(
                "the deadline passed after {produced} of {k} situations"
            ))),
            Some(Event::Failed(message)) => Err(empathy_common::status::internal(
                "generating situations",
                message,
            )),
        };
        let next = item.is_ok().then_some((rx, permit, span));
        Some((item, next))
    })
}

#[tonic::async_trait]
impl SituationService for Situations {
    type GenerateStream = SituationStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let inner = &self.inner;
        inner
            .metrics
            .track("Generate", inner.generate(request))
            .await
            .map(Response::new)
    }

    async fn info(
        &self,
        _: Request<SituationInfoRequest>,
    ) -> Result<Response<SituationInfo>, Status> {
        let info = &self.inner.info;
        Ok(Response::new(SituationInfo {
            generator: Some(info.generator.clone()),
            critic: info.critic.clone(),
            device: info.device.clone(),
            max_k: self.inner.limits.max_k,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> GenerateRequest {
        GenerateRequest {
            utterance: "My dog died yesterday".into(),
            k: 2,
            seed: 7,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_zero_fields() {
        let v = validate(&req(), &Limits::default()).unwrap();
        assert_eq!(v.k, 2);
        assert_eq!(v.seed, 7);
        assert_eq!(v.sampling.max_tokens, 48);
        assert!((v.sampling.temperature - 0.8).abs() < 1e-6);
    }

    #[test]
    fn english_or_an_unknown_language_is_accepted_and_others_refused() {
        for language in ["", "en", "en-GB", "EN_us"] {
            let r = GenerateRequest {
                language: language.into(),
                ..req()
            };
            assert!(validate(&r, &Limits::default()).is_ok(), "{language}");
        }
        let zh = GenerateRequest {
            language: "zh".into(),
            ..req()
        };
        let err = validate(&zh, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("English only"), "{}", err.message());
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        let l = Limits::default();
        let cases: Vec<(GenerateRequest, &str)> = vec![
            (
                GenerateRequest {
                    utterance: " ".into(),
                    ..req()
                },
                "utterance is empty",
            ),
            (
                GenerateRequest {
                    utterance: "x".repeat(1001),
                    ..req()
                },
                "limit is 1000",
            ),
            (GenerateRequest { k: 0, ..req() }, "k is 0"),
            (GenerateRequest { k: 9, ..req() }, "1 to 8"),
            (
                GenerateRequest {
                    temperature: -1.0,
                    ..req()
                },
                "temperature",
            ),
            (
                GenerateRequest {
                    temperature: 2.5,
                    ..req()
                },
                "temperature",
            ),
            (
                GenerateRequest {
                    temperature: f32::NAN,
                    ..req()
                },
                "temperature",
            ),
            (
                GenerateRequest {
                    top_p: 1.5,
                    ..req()
                },
                "top_p",
            ),
            (
                GenerateRequest {
                    top_p: -0.1,
                    ..req()
                },
                "top_p",
            ),
            (
                GenerateRequest {
                    max_tokens: 129,
                    ..req()
                },
                "max_tokens",
            ),
            (
                GenerateRequest {
                    context: vec!["a".into(); 65],
                    ..req()
                },
                "context",
            ),
        ];
        for (r, want) in cases {
            let err = validate(&r, &l).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().contains(want),
                "{} lacks {want}",
                err.message()
            );
        }
    }
}
