//! The public `empathy.v1.EmpathyService`.

use std::{collections::BTreeMap, pin::Pin, sync::Arc};

use empathy_common::Metrics;
use empathy_proto::{
    EMOTION_LABELS, SENTIMENT_LABELS,
    modality::SITUATION,
    v1::{
        AnalyzeRequest, AnalyzeResponse, FeedbackRequest, FeedbackResponse, InfoRequest,
        InfoResponse, ModalityStatus, Turn, empathy_service_server::EmpathyService,
    },
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::analyze::Analyzer;

#[derive(Clone)]
pub struct Empathy {
    analyzer: Arc<Analyzer>,
    metrics: Metrics,
}

impl Empathy {
    pub fn new(analyzer: Analyzer, metrics: Metrics) -> Self {
        Self {
            analyzer: Arc::new(analyzer),
            metrics,
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
        self.metrics
            .track("Analyze", self.analyzer.analyze(request.into_inner()))
            .await
            .map(Response::new)
    }

    type AnalyzeStreamStream = AnalyzeStream;

    /// One conversation: a turn without its own context is analysed with the turns
    /// before it on this stream.
    async fn analyze_stream(
        &self,
        request: Request<Streaming<AnalyzeRequest>>,
    ) -> Result<Response<Self::AnalyzeStreamStream>, Status> {
        let analyzer = Arc::clone(&self.analyzer);
        let metrics = self.metrics.clone();
        let max_turns = analyzer.limits.max_context_turns;
        let out = futures::stream::unfold(
            (request.into_inner(), Vec::<Turn>::new()),
            move |(mut incoming, mut history)| {
                let analyzer = Arc::clone(&analyzer);
                let metrics = metrics.clone();
                async move {
                    let mut req = match incoming.next().await? {
                        Ok(r) => r,
                        Err(status) => return Some((Err(status), (incoming, history))),
                    };
                    if req.context.is_empty() {
                        req.context = history.clone();
                    }
                    let typed = req.text.trim().to_string();
                    let result = metrics.track("AnalyzeStream", analyzer.analyze(req)).await;
                    if let Ok(resp) = &result {
                        let said = if typed.is_empty() {
                            resp.transcript.clone()
                        } else {
                            typed
                        };
                        if !said.is_empty() {
                            history.push(Turn {
                                speaker: "user".into(),
                                text: said,
                            });
                            let excess = history.len().saturating_sub(max_turns);
                            history.drain(..excess);
                        }
                    }
                    Some((result, (incoming, history)))
                }
            },
        );
        Ok(Response::new(Box::pin(out)))
    }

    async fn feedback(
        &self,
        _: Request<FeedbackRequest>,
    ) -> Result<Response<FeedbackResponse>, Status> {
        Err(Status::unimplemented(
            "feedback is not stored by this version of the server; the learning loop (trainer service) is not deployed yet",
        ))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let a = &self.analyzer;
        let manifest = a.model.manifest();
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
            notes: notes(
                &manifest.emotion_source,
                manifest.trained_tokens.iter().any(|t| t == SITUATION),
                a.situations.configured(),
            ),
            metrics: metrics.into_iter().collect(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}

/// Plain words on how each output is produced by this version.
fn notes(emotion_source: &str, trained_on_situations: bool, has_service: bool) -> Vec<String> {
    let emotions = if emotion_source == "lexicon" {
        "emotions: scored from the lexicons (VADER + text2emotion word lists, with negation and intensifiers), not yet learned by the model"
    } else {
        "emotions: the model's emotion head, each emotion scored on its own (sigmoid)"
    };
    vec![
        "sentiment: the fusion model's sentiment head, trained on the English tweet corpus (see README for test-split accuracy)".into(),
        emotions.into(),
        "context: validated and kept per stream; the model does not condition on it yet".into(),
        match (has_service, trained_on_situations) {
            (false, _) => "situations: not generated (fusion runs without --situations)",
            (true, false) => "situations: imagined and scored by the situation service and returned; this model version was not trained with them, so they do not change the answer",
            (true, true) => "situations: imagined by the situation service and attended over by the model (see each one's attention)",
        }
        .into(),
    ]
}
