//! SuggestReplies and SetReplies: a tenant's reply templates (kept by the trainer, or
//! sent with the request), ranked for an analysed turn by what happened and how the
//! person feels.

mod rank;
mod templates;

use std::time::{Duration, Instant};

use empathy_proto::v1::{
    EncodeRequest, ReplySuggestion, ReplyTemplate, SetRepliesRequest, SetRepliesResponse,
    SuggestRepliesRequest, SuggestRepliesResponse, TenantReplies, Turn,
};
use tonic::Status;

use crate::analyze::Analyzer;
use crate::encoders::EncodeError;
pub use templates::Embeddings;

/// Most suggestions one call returns.
const MAX_TOP_K: u32 = 50;
/// Suggestions when the request does not say.
const DEFAULT_TOP_K: u32 = 3;
/// The previous turns read into the turn's meaning: what just happened.
const CONTEXT_TURNS: usize = 3;
/// The least time given to each request to the text encoder.
const MIN_DEADLINE: Duration = Duration::from_secs(5);
/// Template texts per request to the text encoder: a whole bank in one request would
/// be refused as more work than a request may queue for.
const ENCODE_CHUNK: usize = 8;

pub async fn set(
    analyzer: &Analyzer,
    tenant: &str,
    request: SetRepliesRequest,
) -> Result<SetRepliesResponse, Status> {
    templates::check(&request.templates)?;
    let trainer = analyzer.trainer.as_ref().ok_or_else(no_trainer)?;
    let stored = trainer
        .put_replies(TenantReplies {
            tenant: tenant.to_string(),
            templates: request.templates,
            updated_unix_ms: 0,
        })
        .await?;
    tracing::info!(
        tenant,
        templates = stored.templates.len(),
        "reply templates set"
    );
    Ok(SetRepliesResponse {
        templates: stored.templates.len() as u32,
    })
}

pub async fn suggest(
    analyzer: &Analyzer,
    cache: &Embeddings,
    tenant: &str,
    request: SuggestRepliesRequest,
) -> Result<SuggestRepliesResponse, Status> {
    let top_k = match request.top_k {
        0 => DEFAULT_TOP_K,
        k if k <= MAX_TOP_K => k,
        k => {
            return Err(Status::invalid_argument(format!(
                "top_k is {k}; ask for at most {MAX_TOP_K}"
            )));
        }
    };
    let turn = request
        .turn
        .ok_or_else(|| Status::invalid_argument("turn is missing: the AnalyzeRequest to answer"))?;
    templates::check(&request.templates)?;
    let (bank, templates) = if request.templates.is_empty() {
        ("tenant", tenant_bank(analyzer, tenant).await?)
    } else {
        ("request", request.templates)
    };
    let (typed, context) = (turn.text.trim().to_string(), turn.context.clone());
    let analysis = analyzer.analyze(turn, tenant).await?;
    let text = match typed.as_str() {
        "" => analysis.transcript.trim(),
        typed => typed,
    };
    // A turn without words (a face alone) is answered by feeling alone.
    let vectors = if text.is_empty() {
        Vectors::none(templates.len())
    } else {
        embed(analyzer, cache, text, &context, &templates).await?
    };
    let emotions: Vec<(String, f32)> = analysis
        .emotions
        .iter()
        .flat_map(|e| e.scores.iter().map(|s| (s.label.clone(), s.score)))
        .collect();
    let mut ranked: Vec<(rank::Fit, ReplyTemplate)> = templates
        .into_iter()
        .zip(&vectors.templates)
        .map(|(t, v)| (rank::fit(&vectors.query(), v, &t.emotions, &emotions), t))
        .collect();
    ranked.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
    let top = emotions
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(l, _)| l.as_str())
        .unwrap_or("neutral");
    let suggestions = ranked
        .into_iter()
        .take(top_k as usize)
        .map(|(fit, template)| ReplySuggestion {
            why: why(&fit, &template, top),
            template: Some(template),
            score: fit.score,
            meaning: fit.meaning,
            feeling: fit.feeling,
        })
        .collect();
    Ok(SuggestRepliesResponse {
        analysis: Some(analysis),
        suggestions,
        bank: bank.to_string(),
    })
}

async fn tenant_bank(analyzer: &Analyzer, tenant: &str) -> Result<Vec<ReplyTemplate>, Status> {
    let trainer = analyzer.trainer.as_ref().ok_or_else(no_trainer)?;
    let bank = trainer.replies(tenant).await?;
    if bank.templates.is_empty() {
        return Err(Status::failed_precondition(format!(
            "tenant {tenant} has no reply templates: register them with SetReplies \
             (`empathy replies set FILE.jsonl`) or send them in the request's templates"
        )));
    }
    Ok(bank.templates)
}

fn no_trainer() -> Status {
    Status::failed_precondition(
        "this fusion runs without a trainer, which keeps the tenants' reply templates; \
         send the templates with each SuggestReplies request",
    )
}

/// Says in words why a template ranks where it does.
fn why(fit: &rank::Fit, template: &ReplyTemplate, felt: &str) -> String {
    let meant = if template.emotions.is_empty() {
        "meant for any feeling".to_string()
    } else {
        format!("meant for {}", template.emotions.join("/"))
    };
    format!(
        "words {:.2} close to what was said; {meant}, {:.0}% of the analysed feeling (mostly {felt})",
        fit.meaning,
        fit.feeling * 100.0
    )
}

/// The turn's and the templates' text embeddings.
struct Vectors {
    alone: Vec<f32>,
    with_context: Option<Vec<f32>>,
    /// Per template: its text's vector, then its examples'.
    templates: Vec<Vec<Vec<f32>>>,
}

impl Vectors {
    fn none(templates: usize) -> Vectors {
        Vectors {
            alone: Vec::new(),
            with_context: None,
            templates: vec![Vec::new(); templates],
        }
    }

    fn query(&self) -> rank::Query<'_> {
        rank::Query {
            alone: &self.alone,
            with_context: self.with_context.as_deref(),
        }
    }
}

/// Encodes the turn (alone and after its last few turns of context) and the
/// templates' texts and examples not cached yet.
async fn embed(
    analyzer: &Analyzer,
    cache: &Embeddings,
    text: &str,
    context: &[Turn],
    templates: &[ReplyTemplate],
) -> Result<Vectors, Status> {
    let mut queries = vec![text.to_string()];
    let recent = &context[context.len().saturating_sub(CONTEXT_TURNS)..];
    if !recent.is_empty() {
        let mut joined: Vec<&str> = recent.iter().map(|t| t.text.trim()).collect();
        joined.push(text);
        queries.push(joined.join(" "));
    }
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    let (mut turn, model) = encode(analyzer, &queries).await?;
    // Each template's keys: its text, then its examples.
    let texts: Vec<&str> = templates
        .iter()
        .flat_map(|t| std::iter::once(t.text.as_str()).chain(t.examples.iter().map(String::as_str)))
        .collect();
    let (mut cached, cached_model) = cache.get(&texts);
    if cached_model != model {
        cached = vec![None; texts.len()];
    }
    let missing: Vec<&str> = texts
        .iter()
        .zip(&cached)
        .filter(|(_, v)| v.is_none())
        .map(|(t, _)| *t)
        .collect();
    let mut fresh = Vec::with_capacity(missing.len());
    for chunk in missing.chunks(ENCODE_CHUNK) {
        let (vectors, chunk_model) = encode(analyzer, chunk).await?;
        if chunk_model != model {
            return Err(Status::unavailable(
                "the text encoder changed its model during the request; retry",
            ));
        }
        fresh.extend(vectors);
    }
    cache.put(&model, &missing, &fresh);
    let mut fresh = fresh.into_iter();
    let mut keys = cached
        .into_iter()
        .map(|v| v.or_else(|| fresh.next()).unwrap_or_default());
    let templates = templates
        .iter()
        .map(|t| keys.by_ref().take(1 + t.examples.len()).collect())
        .collect();
    let with_context = (turn.len() > 1).then(|| turn.pop()).flatten();
    Ok(Vectors {
        alone: turn.pop().unwrap_or_default(),
        with_context,
        templates,
    })
}

/// One vector per text from the text encoder, and the model that made them.
async fn encode(analyzer: &Analyzer, texts: &[&str]) -> Result<(Vec<Vec<f32>>, String), Status> {
    let request = EncodeRequest::texts(empathy_proto::modality::TEXT, texts.iter().copied());
    let deadline = analyzer.default_deadline.max(MIN_DEADLINE);
    let (started, mut wait) = (Instant::now(), Duration::from_millis(50));
    // A busy encoder refuses work it could not start soon: wait and ask again, within
    // the deadline, rather than fail a whole bank for one chunk.
    let response = loop {
        let left = deadline.saturating_sub(started.elapsed());
        match analyzer.pool.encode(request.clone(), left).await {
            Err(EncodeError::Busy(_)) if started.elapsed() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            result => break result,
        }
    }
    .map_err(|e| match e {
        EncodeError::BadInput(m) => Status::invalid_argument(m),
        EncodeError::Missing(m) | EncodeError::Busy(m) => {
            Status::unavailable(format!("the reply templates could not be encoded: {m}"))
        }
    })?;
    if response.outputs.len() != texts.len() {
        return Err(Status::internal(format!(
            "the text encoder returned {} vectors for {} texts",
            response.outputs.len(),
            texts.len()
        )));
    }
    let model = response
        .model
        .map(|m| format!("{}@{}", m.id, m.version))
        .unwrap_or_default();
    Ok((
        response.outputs.into_iter().map(|o| o.embedding).collect(),
        model,
    ))
}
