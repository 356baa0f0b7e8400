//! The public `empathy.v1.EmpathyService`.

use std::{
    collections::{BTreeMap, VecDeque},
    pin::Pin,
    sync::Arc,
};

use empathy_common::Metrics;
use empathy_grpc::v1::{
    AnalyzeRequest, AnalyzeResponse, FeedbackRequest, FeedbackResponse, ForgetAnalysesRequest,
    ForgetAnalysesResponse, InfoRequest, InfoResponse, ModalityStatus, SetRepliesRequest,
    SetRepliesResponse, SubjectTrajectoryRequest, SubjectTrajectoryResponse, SuggestLabelsRequest,
    SuggestLabelsResponse, SuggestRepliesRequest, SuggestRepliesResponse, Turn,
    empathy_service_server::EmpathyService,
};
use empathy_model::Manifest;
use empathy_proto::{EMOTION_LABELS, SENTIMENT_LABELS, modality::SITUATION};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::replies;
use crate::utterances::{self, Utterances};
use crate::{analyze::Analyzer, meaning, trajectory::Curve, validate};

#[derive(Clone)]
pub struct Empathy {
    analyzer: Arc<Analyzer>,
    metrics: Metrics,
    /// Reply templates' embeddings, shared by all calls.
    replies: Arc<replies::Embeddings>,
}

impl Empathy {
    pub fn new(analyzer: Analyzer, metrics: Metrics) -> Self {
        Self {
            analyzer: Arc::new(analyzer),
            metrics,
            replies: Arc::default(),
        }
    }
}

type AnalyzeStream = Pin<Box<dyn Stream<Item = Result<AnalyzeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EmpathyService for Empathy {
    async fn analyze(
        &self,
        request: Request<AnalyzeRequest>,
    ) -> Result<Response<AnalyzeResponse>, Status> {
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let request = request.into_inner();
        if !request.audio_pcm.is_empty() {
            return Err(Status::invalid_argument(
                "audio_pcm carries a live stream and is only read by AnalyzeStream; send a whole clip in audio",
            ));
        }
        self.metrics
            .track("Analyze", self.analyzer.analyze(request, &tenant))
            .await
            .map(Response::new)
    }

    type AnalyzeStreamStream = AnalyzeStream;

    /// One conversation: each turn is analysed with the turns before it on this stream
    /// (the person's, and those a request adds in `context`), and answered with the
    /// trajectory so far. Audio may also come as a live PCM stream (`audio_pcm`),
    /// answered once per utterance.
    async fn analyze_stream(
        &self,
        request: Request<Streaming<AnalyzeRequest>>,
    ) -> Result<Response<Self::AnalyzeStreamStream>, Status> {
        let conversation = Conversation {
            tenant: empathy_common::Identity::of(&request)?.tenant,
            analyzer: Arc::clone(&self.analyzer),
            metrics: self.metrics.clone(),
            incoming: request.into_inner(),
            history: Vec::new(),
            curve: Curve::default(),
            audio: Utterances::default(),
            last_chunk: None,
            ready: VecDeque::new(),
            ended: false,
        };
        let out = futures::stream::unfold(conversation, Conversation::next_answer);
        Ok(Response::new(Box::pin(out)))
    }

    async fn feedback(
        &self,
        request: Request<FeedbackRequest>,
    ) -> Result<Response<FeedbackResponse>, Status> {
        let a = &self.analyzer;
        let identity = empathy_common::Identity::of(&request)?;
        let work = crate::feedback::submit(a, a.trainer.as_ref(), identity, request.into_inner());
        self.metrics
            .track("Feedback", work)
            .await
            .map(Response::new)
    }

    async fn forget_analyses(
        &self,
        request: Request<ForgetAnalysesRequest>,
    ) -> Result<Response<ForgetAnalysesResponse>, Status> {
        let subject = request.into_inner().subject_id;
        if subject.trim().is_empty() {
            return Err(Status::invalid_argument(
                "subject_id is empty: give the id the analyses were sent with",
            ));
        }
        let dropped = self.analyzer.recent.forget(&subject) as u64;
        tracing::info!(dropped, "forgot a subject's analyses");
        Ok(Response::new(ForgetAnalysesResponse { dropped }))
    }

    /// The caller's tenant's recent analyses most worth labelling.
    async fn suggest_labels(
        &self,
        request: Request<SuggestLabelsRequest>,
    ) -> Result<Response<SuggestLabelsResponse>, Status> {
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let limit = request.into_inner().limit;
        crate::suggest::suggest(&self.analyzer.recent, &tenant, limit).map(Response::new)
    }

    async fn suggest_replies(
        &self,
        request: Request<SuggestRepliesRequest>,
    ) -> Result<Response<SuggestRepliesResponse>, Status> {
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let work = replies::suggest(&self.analyzer, &self.replies, &tenant, request.into_inner());
        self.metrics
            .track("SuggestReplies", work)
            .await
            .map(Response::new)
    }

    async fn subject_trajectory(
        &self,
        request: Request<SubjectTrajectoryRequest>,
    ) -> Result<Response<SubjectTrajectoryResponse>, Status> {
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let trainer = self.analyzer.trainer.as_ref();
        let work = crate::care::trajectory(trainer, &tenant, request.into_inner());
        self.metrics
            .track("SubjectTrajectory", work)
            .await
            .map(Response::new)
    }

    async fn set_replies(
        &self,
        request: Request<SetRepliesRequest>,
    ) -> Result<Response<SetRepliesResponse>, Status> {
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let work = replies::set(&self.analyzer, &tenant, request.into_inner());
        self.metrics
            .track("SetReplies", work)
            .await
            .map(Response::new)
    }

    /// About the version that serves the caller's tenant.
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let a = &self.analyzer;
        let tenant = empathy_common::Identity::of(&request)?.tenant;
        let model = a.models.get(&tenant).await?;
        let manifest = model.manifest();
        let routes = a.pool.routes().await;
        let mut modalities: Vec<ModalityStatus> = routes
            .iter()
            .map(|(m, endpoint)| ModalityStatus {
                modality: m.clone(),
                endpoint: endpoint.clone(),
                available: true,
                detail: String::new(),
            })
            .collect();
        for (endpoint, reason) in a.pool.unreachable().await {
            modalities.push(ModalityStatus {
                modality: String::new(),
                endpoint,
                available: false,
                detail: reason,
            });
        }
        let metrics: BTreeMap<String, f32> = manifest
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), *v as f32))
            .collect();
        Ok(Response::new(InfoResponse {
            model_version: manifest.version.clone(),
            sentiment_labels: SENTIMENT_LABELS.iter().map(|s| s.to_string()).collect(),
            emotion_labels: EMOTION_LABELS.iter().map(|s| s.to_string()).collect(),
            modalities,
            notes: notes(manifest, a.situations.configured(), a.min_confidence)
                .into_iter()
                .chain(meaning_note(manifest, a.meaning.as_ref(), a.meaning_mode))
                .collect(),
            metrics: metrics.into_iter().collect(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}

/// Plain words on how each output is produced by this version, and when an answer is
/// marked low_confidence.
fn notes(manifest: &Manifest, has_service: bool, min_confidence: f32) -> Vec<String> {
    let trained_on_situations = manifest.trained_tokens.iter().any(|t| t == SITUATION);
    let calibration = match &manifest.calibration {
        Some(c) => format!(
            "scores calibrated by a temperature of {:.3} fitted on the {}",
            c.temperature, c.fitted_on
        ),
        None => "scores not calibrated (this version predates calibration)".to_string(),
    };
    let sentiment = format!(
        "sentiment: the fusion model's sentiment head, trained on the English tweet corpus \
         (see README for test-split accuracy); {calibration}; an answer whose top score is \
         below {min_confidence:.2} is marked low_confidence"
    );
    let emotions = if manifest.emotion_source == "lexicon" {
        "emotions: scored from the lexicons (VADER + text2emotion word lists, with negation and intensifiers), not yet learned by the model"
    } else {
        "emotions: the model's emotion head, each emotion scored on its own (sigmoid)"
    };
    vec![
        sentiment,
        emotions.into(),
        context_note(manifest),
        match (has_service, trained_on_situations) {
            (false, _) => "situations: not generated (fusion runs without --situations)",
            (true, false) => "situations: imagined and scored by the situation service and returned; this model version was not trained with them, so they do not change the answer",
            (true, true) => "situations: imagined by the situation service and attended over by the model (see each one's attention)",
        }
        .into(),
    ]
}

/// Where the meaning reader serves this version (`meaning::not_read_for`), what it does,
/// and which requests it reads.
fn meaning_note(
    manifest: &Manifest,
    reader: Option<&meaning::Meaning>,
    mode: meaning::Mode,
) -> Option<String> {
    let which = match mode {
        meaning::Mode::On => "every request that does not turn it off (options.meaning_reading)",
        meaning::Mode::OnRequest | meaning::Mode::Off => {
            "only the requests that ask for it (options.meaning_reading MEANING_READING_ON)"
        }
    };
    let emotions = match meaning::Emotions::of(manifest) {
        meaning::Emotions::Moved => {
            "the emotions and valence always (emotions source \"+reader\", whose scores \
             share 1)"
        }
        meaning::Emotions::Kept => {
            "the valence always, and leaves the emotions to the version's head, which \
             learnt from corrections"
        }
    };
    let reader = reader.filter(|r| meaning::not_read_for(manifest, r.model()).is_none())?;
    Some(format!(
        "meaning: the meaning reader ({}, in {}) reads texts in {}, or the \
         turns before in a conversation; it moves the sentiment where it is sure (more on \
         a text unlike the version's training texts, which a note then says), and \
         {emotions}; it reads {which}",
        reader.model().title(),
        reader.arithmetic(),
        empathy_reader::READ_LANGUAGES.join(", ")
    ))
}

fn context_note(manifest: &Manifest) -> String {
    if crate::context::turns_read(manifest, usize::MAX) == 0 {
        return format!(
            "context: validated and kept per stream; model version {} was trained without \
             conversations and answers from the last turn alone",
            manifest.version
        );
    }
    format!(
        "context: the model reads the {} most recent previous turns (each with its speaker) \
         as tokens, trained on conversations made from the tweet corpus; attributions of \
         kind \"context\" say how much each weighed",
        manifest.dims.max_context
    )
}

/// One AnalyzeStream call: the turns so far, and the live audio not yet answered.
struct Conversation {
    /// The caller's tenant (from its key): the analyses are its own.
    tenant: String,
    analyzer: Arc<Analyzer>,
    metrics: Metrics,
    incoming: Streaming<AnalyzeRequest>,
    history: Vec<Turn>,
    /// The person's feeling turn by turn.
    curve: Curve,
    audio: Utterances,
    /// The latest `audio_pcm` chunk's other fields, for an utterance the end flushes.
    last_chunk: Option<AnalyzeRequest>,
    /// Requests to answer, in the order they became complete.
    ready: VecDeque<AnalyzeRequest>,
    ended: bool,
}

impl Conversation {
    /// The next answer on the stream: a typed or whole-clip turn, or an utterance the
    /// live audio completed; reads chunks until there is one.
    async fn next_answer(mut self) -> Option<(Result<AnalyzeResponse, Status>, Self)> {
        loop {
            if let Some(req) = self.ready.pop_front() {
                let answer = self.answer(req).await;
                return Some((answer, self));
            }
            if self.ended {
                return None;
            }
            match self.incoming.next().await {
                None => {
                    self.ended = true;
                    if let (Some(samples), Some(chunk)) =
                        (self.audio.finish(), self.last_chunk.take())
                    {
                        self.ready.push_back(utterance(&samples, &chunk));
                    }
                }
                Some(Err(status)) => return Some((Err(status), self)),
                Some(Ok(mut req)) if !req.audio_pcm.is_empty() => {
                    let limits = &self.analyzer.limits;
                    if let Err(status) = validate::check_audio_pcm(req.audio_pcm.len(), limits) {
                        return Some((Err(status), self));
                    }
                    let pcm = std::mem::take(&mut req.audio_pcm);
                    for samples in self.audio.push(&pcm) {
                        self.ready.push_back(utterance(&samples, &req));
                    }
                    self.last_chunk = Some(req);
                }
                Some(Ok(req)) => self.ready.push_back(req),
            }
        }
    }

    /// Analyses a turn with the conversation so far plus what was said since the last
    /// one (`req.context`, e.g. the agent's reply); a refused turn leaves the
    /// conversation as it was.
    async fn answer(&mut self, mut req: AnalyzeRequest) -> Result<AnalyzeResponse, Status> {
        let limit = self.analyzer.limits.max_context_turns;
        let mut turns = self.history.clone();
        turns.append(&mut req.context);
        keep_last(&mut turns, limit);
        req.context = turns.clone();
        let typed = req.text.trim().to_string();
        let mut result = self
            .metrics
            .track("AnalyzeStream", self.analyzer.analyze(req, &self.tenant))
            .await;
        if let Ok(resp) = &mut result {
            let said = if typed.is_empty() {
                resp.transcript.clone()
            } else {
                typed
            };
            if !said.is_empty() {
                turns.push(Turn {
                    speaker: "user".into(),
                    text: said,
                });
            }
            keep_last(&mut turns, limit);
            self.history = turns;
            resp.trajectory = Some(self.curve.add(resp));
        }
        result
    }
}

fn keep_last(turns: &mut Vec<Turn>, limit: usize) {
    let excess = turns.len().saturating_sub(limit);
    turns.drain(..excess);
}

/// An utterance as a whole-clip request, with the options, id and context of the chunk
/// that completed it.
fn utterance(samples: &[i16], chunk: &AnalyzeRequest) -> AnalyzeRequest {
    AnalyzeRequest {
        audio: utterances::wav(samples).into(),
        options: chunk.options.clone(),
        request_id: chunk.request_id.clone(),
        context: chunk.context.clone(),
        ..Default::default()
    }
}
