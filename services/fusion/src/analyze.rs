//! One analysis: encode every modality present (concurrently, each within the
//! deadline), compute lexicon features, run the serving model, explain the answer.

mod call;

use std::{sync::Arc, time::Duration, time::Instant};

use empathy_common::language;
use empathy_model::{
    Expansion, Expert, FusionModel, Lexicon, LexiconAnalysis, ModelInputs, Prediction, PreviousTurn,
};
use empathy_proto::{
    modality::{IMAGE, SPEECH, TEXT},
    v1::{
        AnalyzeRequest, AnalyzeResponse, EncodeInput, EncodeOutput, EncodeRequest, EncodeResponse,
        Face, Situation, StageTiming, encode_input::Payload,
    },
};
use tonic::Status;

use call::{Call, check_model_version};

use crate::{
    context::{self, ReadContext},
    encoded::{Encoded, Imagined},
    encoders::{EncodeError, EncoderPool},
    explain::{
        attributions, emotion_source, emotions, face_expert, low_confidence_note, sentiment,
        situation_experts, situation_results,
    },
    meaning::{self, Meaning},
    model_lines::ModelLines,
    reading,
    recent::{self, Owner, RecentAnalyses, Verdict},
    situations::{Ask, SituationSource},
    trainer_link::TrainerLink,
    validate::{self, Limits},
};

pub struct Analyzer {
    pub pool: EncoderPool,
    pub situations: SituationSource,
    pub lexicon: Arc<Lexicon>,
    /// The base line's version and the tenants' own.
    pub models: Arc<ModelLines>,
    pub recent: Arc<RecentAnalyses>,
    pub trainer: Option<TrainerLink>,
    pub limits: Limits,
    pub default_deadline: Duration,
    /// How long situations get when a request sets no deadline.
    pub situations_deadline: Duration,
    /// Answers whose top sentiment score is below this are marked low_confidence.
    pub min_confidence: f32,
    /// The meaning reader, when it was fetched and not turned off.
    pub meaning: Option<Meaning>,
    /// How the server offers it (`--meaning-reader`).
    pub meaning_mode: meaning::Mode,
}

/// Everything gathered for one request before the model runs.
struct Gathered {
    enc: Encoded,
    /// The speech transcript, trimmed (empty without speech).
    transcript: String,
    /// The typed text, else the transcript.
    analysed_text: String,
    /// Its language (see language::resolve); empty when unknown.
    language: String,
    situations: Vec<Situation>,
    situation_vectors: Vec<Vec<f32>>,
    context: Vec<PreviousTurn>,
}

impl Gathered {
    /// The faces found in the image, largest first.
    fn faces(&self) -> Vec<Face> {
        self.enc
            .image
            .as_ref()
            .map(|i| i.faces.clone())
            .unwrap_or_default()
    }

    /// Remarks for the client about what was found.
    fn notes(&self, faces: &[Face]) -> Vec<String> {
        let mut notes = Vec::new();
        if self.enc.image.is_some() && faces.is_empty() {
            notes.push("image: no face found".to_string());
        }
        notes
    }
}

/// Runs the model on its own thread; returns its prediction and the features it saw
/// (for feedback), timed together.
async fn predict(
    model: &Arc<FusionModel>,
    inputs: ModelInputs,
    enc: &mut Encoded,
) -> Result<(Prediction, recent::Features), Status> {
    let t = Instant::now();
    let features = recent::Features::of(&inputs);
    let model = Arc::clone(model);
    let prediction = tokio::task::spawn_blocking(move || model.predict(&[inputs]))
        .await
        .map_err(|e| empathy_common::status::internal("model thread failed", e))?
        .map_err(|e| empathy_common::status::internal("model failed", e))?
        .pop()
        .ok_or_else(|| Status::internal("model returned no prediction"))?;
    enc.timings.push(StageTiming {
        stage: "model".into(),
        ms: ms_since(t),
    });
    Ok((prediction, features))
}

impl Analyzer {
    /// Modalities a client may name in options: the built-in ones and whatever the
    /// encoders currently serve.
    pub async fn known_modalities(&self) -> Vec<String> {
        let mut known: Vec<String> = [TEXT, SPEECH, IMAGE]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (m, _) in self.pool.routes().await {
            if !known.contains(&m) {
                known.push(m);
            }
        }
        known
    }

    /// Analyses `req` for a caller of `tenant`, who alone may correct it later.
    pub async fn analyze(
        &self,
        req: AnalyzeRequest,
        tenant: &str,
    ) -> Result<AnalyzeResponse, Status> {
        let started = Instant::now();
        validate::check(&req, &self.limits, &self.known_modalities().await)?;
        let opts = req.options.clone().unwrap_or_default();
        let model = self.models.get(tenant).await?;
        let manifest = model.manifest();
        check_model_version(&opts.model_version, &manifest.version, tenant)?;
        let read_meaning = meaning::wanted(
            self.meaning_mode,
            self.meaning.is_some(),
            opts.meaning_reading(),
        )?;
        let call = Call::new(
            &req,
            &opts,
            manifest,
            (self.default_deadline, self.situations_deadline),
            (read_meaning, self.meaning.as_ref().map(|m| m.model())),
        );

        let mut gathered = self.encode_all(&call).await?;
        gathered.enc.note_extras(&req.extra, &manifest.version);
        gathered.enc.require_any()?;
        // The serving version's features were computed with its own expanded lexicon
        // (or none); `model` is this request's version throughout.
        let expansion = model.lexicon_expansion();
        let lexicon = self.lexicon_features(expansion, &gathered.analysed_text, &mut gathered.enc);
        let faces = gathered.faces();
        let mut notes = gathered.notes(&faces);
        notes.extend(context::unread_note(manifest, req.context.len()));
        let read_by = gathered.enc.reading.as_ref().map(|(m, _)| m.clone());
        notes.extend(reading::notes(
            &gathered.language,
            read_by.as_deref(),
            &gathered.analysed_text,
        ));
        // Only the meaning reader asks; before the embedding goes into the inputs.
        let unusual = match (call.read_meaning, model.typicality(), &gathered.enc.text) {
            (true, Some(t), Some(embedding)) => t.unusual(embedding),
            _ => false,
        };
        let inputs = self.model_inputs(expansion, &mut gathered, &faces, &lexicon);
        let (mut prediction, mut features) = predict(&model, inputs, &mut gathered.enc).await?;
        let meaning_read = self
            .read_meaning(
                &call,
                &mut gathered,
                started,
                unusual,
                &mut prediction,
                &mut notes,
            )
            .await;
        features.meaning = meaning_read.shift();
        let low_confidence = low_confidence_note(&prediction, self.min_confidence);
        notes.extend(low_confidence.clone());
        gathered.enc.timings.push(StageTiming {
            stage: "total".into(),
            ms: ms_since(started),
        });

        let analysis_id = self.recent.remember(
            &gathered.analysed_text,
            features,
            &manifest.version,
            Owner {
                tenant,
                subject_id: &req.subject_id,
            },
            Verdict::of(&prediction, &lexicon),
        );
        let situations = situation_results(gathered.situations, &prediction);
        let attributions = if opts.skip_attributions {
            Vec::new()
        } else {
            let mut found = attributions(&prediction, &lexicon, &situations);
            context::name_turns(&mut found, &req.context, call.context_read);
            if let Some((_, r)) = &gathered.enc.reading {
                found.extend(reading::word_attributions(r));
            }
            found
        };
        let mut response = AnalyzeResponse {
            analysis_id,
            sentiment: Some(sentiment(&prediction)),
            emotions: Some(emotions(
                &prediction,
                &emotion_source(
                    read_by.as_deref().unwrap_or(&manifest.emotion_source),
                    meaning_read.moved_emotions(),
                    &prediction,
                ),
            )),
            valence: prediction.valence,
            arousal: prediction.arousal,
            transcript: gathered.transcript,
            situations,
            attributions,
            model_version: manifest.version.clone(),
            modalities_used: gathered.enc.used,
            modalities_missing: gathered.enc.missing,
            timings: gathered.enc.timings,
            faces,
            request_id: req.request_id,
            detected_language: gathered.language,
            notes,
            low_confidence: low_confidence.is_some(),
            trajectory: None,
        };
        if opts.record_affect {
            let trainer = self.trainer.as_ref();
            let note = crate::care::record(trainer, tenant, &req.subject_id, &response).await;
            response.notes.extend(note);
        }
        Ok(response)
    }

    /// Encodes every modality present and imagines situations, each within the
    /// deadline; fails only if an input was refused.
    async fn encode_all(&self, call: &Call<'_>) -> Result<Gathered, Status> {
        let req = call.req;
        let typed_language = language::resolve(&call.opts.language, None, &call.text);
        let typed_reader = self.reader_for(call, &call.text, &typed_language).await;
        // Every modality present is encoded at once, and situations are imagined for
        // typed text meanwhile; each one's wait is bounded.
        let (speech, image, typed, imagined, previous) = tokio::join!(
            self.encode_wanted(call, SPEECH, Payload::Data(req.audio.clone())),
            self.encode_wanted(call, IMAGE, Payload::Data(req.image.clone())),
            self.encode_wanted(
                call,
                typed_reader.as_deref().unwrap_or(TEXT),
                Payload::Text(call.text.clone())
            ),
            self.imagine(
                call,
                call.situations_for(&call.text),
                call.ask(&call.text, &typed_language)
            ),
            self.read_context(call),
        );
        let mut enc = Encoded::default();
        let context = enc.take_context(previous);
        enc.speech = enc.take(SPEECH, speech)?;
        enc.image = enc.take(IMAGE, image)?;

        // A transcript goes down the text path exactly like typed text.
        let transcript = enc
            .speech
            .as_ref()
            .map(|s| s.transcript.trim().to_string())
            .unwrap_or_default();
        let (analysed_text, language, reader) = if call.text.is_empty() {
            let heard = enc.speech.as_ref().map(|s| s.detected_language.as_str());
            let language = language::resolve(&call.opts.language, heard, &transcript);
            let reader = self.reader_for(call, &transcript, &language).await;
            (transcript.clone(), language, reader)
        } else {
            (call.text.clone(), typed_language, typed_reader)
        };
        let text_modality = reader.as_deref().unwrap_or(TEXT);
        let text_out = match typed {
            Some(r) => Some(r),
            None => {
                self.encode_wanted(call, text_modality, Payload::Text(transcript.clone()))
                    .await
            }
        };
        let text_out = enc.take(text_modality, text_out)?;
        match &reader {
            Some(m) => enc.reading = text_out.and_then(|o| o.reading).map(|r| (m.clone(), r)),
            None => enc.text = text_out.map(|o| o.embedding),
        }
        // A spoken utterance is only known now.
        let imagined = match imagined {
            Some(i) => Some(i),
            None => {
                self.imagine(
                    call,
                    call.situations_for(&analysed_text),
                    call.ask(&analysed_text, &language),
                )
                .await
            }
        };
        let (situations, situation_vectors) = enc.take_situations(imagined);
        Ok(Gathered {
            enc,
            transcript,
            analysed_text,
            language,
            situations,
            situation_vectors,
            context,
        })
    }

    /// Moves the sentiment, valence and emotions by the meaning reader's readings
    /// (`meaning::mix`), where it applies: English (or undetected) text that no
    /// language plugin read. With no previous turns read, the reader reads the analysed
    /// text; with turns read, it reads those turns (what happened), and shifts the
    /// answer as far as the model let the turns weigh, so
    /// "Perfect." follows the scene while an outright turn keeps its own feeling. Not
    /// for a request that leaves it out (`Call::read_meaning`), nor for a version
    /// fine-tuned on corrections it learnt without this reader (`Call::reader_overrules`).
    /// Says what it did; notes where it could not read, or where the text was `unusual`
    /// for the model and the reading weighed more. It reads within what is left of the
    /// deadline of the request `started` then.
    async fn read_meaning(
        &self,
        call: &Call<'_>,
        gathered: &mut Gathered,
        started: Instant,
        unusual: bool,
        prediction: &mut Prediction,
        notes: &mut Vec<String>,
    ) -> meaning::Outcome {
        use meaning::Outcome::{NothingToRead, Read, Unread};
        let Some(meaning) = self.meaning.as_ref().filter(|_| call.read_meaning) else {
            return Unread;
        };
        if let Some(why) = &call.reader_overrules {
            notes.extend(meaning::fine_tuned_note(
                call.opts.meaning_reading(),
                call.model_version,
                why,
            ));
            return Unread;
        }
        let applies = call.wanted(TEXT)
            && !gathered.analysed_text.is_empty()
            && gathered.enc.reading.is_none()
            && empathy_reader::reads_language(&gathered.language);
        if !applies {
            return NothingToRead;
        }
        // With turns read, the reader reads them, weighed as the model weighed them
        // (none when they could not be encoded).
        let scene = (call.context_read > 0).then(|| meaning::context_weight(prediction));
        let text = match scene {
            None => gathered.analysed_text.clone(),
            Some(weight) if weight > 0.0 => meaning::scene(call.turns_read()),
            Some(_) => return NothingToRead,
        };
        let deadline = call.deadline.saturating_sub(started.elapsed());
        let (reading, timing) = meaning.read(&text, deadline).await;
        gathered.enc.timings.push(timing);
        let reading = match reading {
            Ok(reading) => reading,
            Err(why) => {
                notes.push(format!(
                    "sentiment and emotions without the meaning reader: {why}"
                ));
                return Unread;
            }
        };
        let (emotions, scale) = (call.reader_emotions, call.reader_shift_scale);
        let read = (&reading, meaning.model());
        let shift = match scene {
            None => {
                if unusual {
                    notes.push(format!(
                        "the text is unlike those model version {} was trained on: the \
                         meaning reader's reading weighed more",
                        call.model_version
                    ));
                }
                if !matches!(gathered.language.as_str(), "en" | "") {
                    notes.push(format!(
                        "language {}: the meaning reader read the text (asked in English)",
                        gathered.language
                    ));
                }
                meaning::mix(prediction, read, unusual, (emotions, scale))
            }
            Some(weight) => meaning::mix_scene(prediction, read, weight, (emotions, scale)),
        };
        Read { shift, emotions }
    }

    /// The language plugin that reads `text` in `language`, if one is served and the
    /// client left text enabled.
    async fn reader_for(&self, call: &Call<'_>, text: &str, language: &str) -> Option<String> {
        if text.is_empty() || !call.wanted(TEXT) {
            return None;
        }
        reading::reader_for(&self.pool, language).await
    }

    /// The previous turns the version reads, encoded; None when it reads none.
    async fn read_context(&self, call: &Call<'_>) -> Option<(ReadContext, f32)> {
        if call.context_read == 0 || !call.wanted(TEXT) {
            return None;
        }
        let check = |r: &EncodeResponse| call.check_text_encoder(r);
        Some(context::encode(&self.pool, call.turns_read(), call.deadline, check).await)
    }

    /// The lexicon's features of `text`, timed.
    fn lexicon_features(
        &self,
        expansion: Option<&Expansion>,
        text: &str,
        enc: &mut Encoded,
    ) -> LexiconAnalysis {
        let t = Instant::now();
        let lexicon = self.lexicon.analyze_with(text, expansion);
        enc.timings.push(StageTiming {
            stage: "lexicon".into(),
            ms: ms_since(t),
        });
        lexicon
    }

    /// What the model sees: the encoders' vectors, the lexicon's features, and the
    /// experts (the largest face, the situations). Takes the text vector and the
    /// situation vectors out of `gathered`.
    fn model_inputs(
        &self,
        expansion: Option<&Expansion>,
        gathered: &mut Gathered,
        faces: &[Face],
        lexicon: &LexiconAnalysis,
    ) -> ModelInputs {
        // The largest face speaks for the image until the model learns its token.
        let mut experts: Vec<Expert> = faces.first().map(face_expert).into_iter().collect();
        experts.extend(situation_experts(
            &self.lexicon,
            expansion,
            &gathered.situations,
        ));
        let enc = &mut gathered.enc;
        ModelInputs {
            text: enc.text.take(),
            lexicon: lexicon.clone(),
            speech: enc
                .speech
                .as_ref()
                .map(|s| s.embedding.clone())
                .filter(|e| !e.is_empty()),
            image: enc
                .image
                .as_ref()
                .map(|i| i.embedding.clone())
                .filter(|e| !e.is_empty()),
            situations: std::mem::take(&mut gathered.situation_vectors),
            context: std::mem::take(&mut gathered.context),
            experts,
            reading: enc
                .reading
                .as_ref()
                .and_then(|(m, r)| reading::for_model(m, r)),
        }
    }

    /// Situations for `ask` and their text embeddings, if `wanted`; the outcome (or
    /// why there are none) and its time.
    async fn imagine(
        &self,
        call: &Call<'_>,
        wanted: bool,
        ask: Ask<'_>,
    ) -> Option<(Imagined, f32)> {
        if !wanted {
            return None;
        }
        let t = Instant::now();
        let deadline = ask.deadline;
        let result = async {
            let situations = self.situations.generate(ask).await?;
            if situations.is_empty() {
                return Ok((situations, Vec::new()));
            }
            let texts = situations.iter().map(|s| s.text.clone());
            let left = deadline.saturating_sub(t.elapsed());
            let encoded = self
                .pool
                .encode(EncodeRequest::texts(TEXT, texts), left)
                .await
                .map_err(|e| match e {
                    EncodeError::BadInput(m) | EncodeError::Missing(m) | EncodeError::Busy(m) => m,
                })
                .and_then(|r| call.check_text_encoder(&r).map(|()| r))
                .map_err(|m| format!("the situations could not be encoded: {m}"))?;
            Ok((
                situations,
                encoded.outputs.into_iter().map(|o| o.embedding).collect(),
            ))
        }
        .await;
        Some((result, ms_since(t)))
    }

    /// Encodes one input of `modality` unless it is empty or the client disabled the
    /// modality; returns the outcome and its time.
    async fn encode_wanted(
        &self,
        call: &Call<'_>,
        modality: &str,
        payload: Payload,
    ) -> Option<(Result<EncodeOutput, EncodeError>, f32)> {
        let present = match &payload {
            Payload::Text(text) => !text.is_empty(),
            Payload::Data(data) => !data.is_empty(),
        };
        if !(call.wanted(modality) && present) {
            return None;
        }
        let (language, deadline) = (&call.opts.language, call.deadline);
        let t = Instant::now();
        let request = EncodeRequest {
            modality: modality.to_string(),
            inputs: vec![EncodeInput {
                payload: Some(payload),
                mime_type: String::new(),
            }],
            language: language.to_string(),
        };
        let result = self.pool.encode(request, deadline).await.and_then(|mut r| {
            if modality == TEXT {
                call.check_text_encoder(&r).map_err(EncodeError::Missing)?;
            }
            r.outputs.pop().ok_or_else(|| {
                EncodeError::Missing(format!("the {modality} encoder returned no output"))
            })
        });
        Some((result, ms_since(t)))
    }
}

fn ms_since(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}
