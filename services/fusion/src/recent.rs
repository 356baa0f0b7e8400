//! Features of recent analyses, so feedback on one can be learnt from without the
//! client resending its inputs, and what the model and the lexicon answered, so that
//! `SuggestLabels` can say which are worth labelling. Bounded by count, by bytes and by
//! age (flags); the oldest entries go first. Memory per entry is about 1.7 KB for text
//! (384 + 24 floats; 3.2 KB with mpnet's 768) plus the text itself, which a client chooses: hence the bound in
//! bytes. Without a trainer nothing can use it, and nothing is kept. Every analysis
//! passes through here, so a sample of them is offered to the trainer from here too
//! (`traffic`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use empathy_model::{LexiconAnalysis, ModelInputs, Prediction};
use empathy_proto::v1::{FloatVector, TrafficSample};

use crate::traffic::Traffic;

/// The inputs the model saw, as the trainer stores them.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub text: Option<Vec<f32>>,
    pub lexicon: Vec<f32>,
    pub speech: Option<Vec<f32>>,
    pub image: Option<Vec<f32>>,
    /// What the meaning reader added to the model's sentiment log-probabilities
    /// (zeros where it applies to no such text, or was unsure); None where it was not
    /// asked to read (`meaning::mix`).
    pub meaning: Option<[f32; 3]>,
}

impl Features {
    pub fn of(inputs: &ModelInputs) -> Features {
        Features {
            text: inputs.text.clone(),
            lexicon: inputs.lexicon.features.clone(),
            speech: inputs.speech.clone(),
            image: inputs.image.clone(),
            meaning: None,
        }
    }

    /// Named vectors, as in `FeedbackRecord.features`.
    pub fn named(&self) -> Vec<(&'static str, Vec<f32>)> {
        let mut out = vec![("lexicon", self.lexicon.clone())];
        for (name, v) in [
            ("text", &self.text),
            ("speech", &self.speech),
            ("image", &self.image),
        ] {
            if let Some(v) = v {
                out.push((name, v.clone()));
            }
        }
        if let Some(shift) = self.meaning {
            out.push((empathy_model::MEANING_SHIFT, shift.to_vec()));
        }
        out
    }
}

/// What an analysis answered, for `SuggestLabels` to judge how unsure it was.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Verdict {
    /// The model's calibrated sentiment scores, SENTIMENT_LABELS order.
    pub sentiment: [f32; 3],
    /// The lexicon's own reading: VADER's compound score in [-1, 1].
    pub lexicon_compound: f32,
}

impl Verdict {
    pub fn of(prediction: &Prediction, lexicon: &LexiconAnalysis) -> Verdict {
        Verdict {
            sentiment: prediction.sentiment,
            lexicon_compound: lexicon.vader_compound,
        }
    }
}

#[derive(Debug)]
pub struct Recent {
    /// The text analysed (typed, or the transcript).
    pub text: String,
    pub features: Features,
    pub model_version: String,
    /// `AnalyzeRequest.subject_id`: feedback on this analysis is stored under it.
    pub subject_id: String,
    /// The tenant whose caller asked: only that tenant may send feedback on it.
    pub tenant: String,
    pub verdict: Verdict,
    pub analyzed_unix_ms: i64,
    /// Feedback on it was stored: it is no longer suggested for labelling.
    corrected: AtomicBool,
    at: Instant,
    /// What this entry takes in memory, roughly: counted against the byte bound.
    size: usize,
}

impl Recent {
    pub fn mark_corrected(&self) {
        self.corrected.store(true, Ordering::Relaxed);
    }

    pub fn corrected(&self) -> bool {
        self.corrected.load(Ordering::Relaxed)
    }
}

/// Whose an analysis is: the caller's tenant, and the person it is about.
#[derive(Clone, Copy, Debug, Default)]
pub struct Owner<'a> {
    pub tenant: &'a str,
    pub subject_id: &'a str,
}

/// Per entry, besides its text and vectors: the id twice (map and queue), the map
/// slot, the Arc and the strings' headers.
const ENTRY_OVERHEAD: usize = 256;
/// The verdict, the time and the corrected mark.
const VERDICT_BYTES: usize = size_of::<Verdict>() + size_of::<i64>() + size_of::<AtomicBool>();

impl Features {
    fn bytes(&self) -> usize {
        let floats = self.lexicon.len()
            + [&self.text, &self.speech, &self.image]
                .iter()
                .map(|v| v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
            + self.meaning.map_or(0, |m| m.len());
        floats * size_of::<f32>()
    }
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RecentLimits {
    /// Analyses whose features are kept for feedback (0 = none: feedback must resend
    /// the original inputs).
    #[arg(long, default_value_t = 10_000)]
    pub recent_max: usize,
    /// How long an analysis's features are kept for feedback, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub recent_max_age_s: u64,
    /// Memory the kept analyses may take, all together, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub recent_cache_bytes: usize,
}

pub struct RecentAnalyses {
    limits: RecentLimits,
    inner: Mutex<Inner>,
    /// The sample of analyses sent to the trainer, if one is configured.
    traffic: Option<Arc<Traffic>>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Recent>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl RecentAnalyses {
    /// The cache of a fusion with a trainer (`has_trainer`); without one, feedback is
    /// refused anyway, so nothing is kept.
    pub fn new(mut limits: RecentLimits, has_trainer: bool) -> RecentAnalyses {
        if !has_trainer {
            limits.recent_max = 0;
        }
        RecentAnalyses {
            limits,
            inner: Mutex::new(Inner::default()),
            traffic: None,
        }
    }

    /// Offers each analysis remembered from now on to `traffic`'s sample.
    pub fn with_traffic(mut self, traffic: Option<Arc<Traffic>>) -> RecentAnalyses {
        self.traffic = traffic;
        self
    }

    pub fn limits(&self) -> RecentLimits {
        self.limits
    }

    fn max_age(&self) -> Duration {
        Duration::from_secs(self.limits.recent_max_age_s)
    }

    /// Keeps an analysis (of `subject_id`'s input, "" if none) under a new id and
    /// returns the id; offers it to the traffic sample.
    pub fn remember(
        &self,
        text: &str,
        features: Features,
        model_version: &str,
        owner: Owner<'_>,
        verdict: Verdict,
    ) -> String {
        let Owner { tenant, subject_id } = owner;
        let id = uuid::Uuid::new_v4().to_string();
        let analyzed_unix_ms = empathy_proto::now_unix_ms();
        if let Some(traffic) = &self.traffic {
            traffic.offer(|| TrafficSample {
                analysis_id: id.clone(),
                tenant: tenant.to_string(),
                model_version: model_version.to_string(),
                features: features
                    .named()
                    .into_iter()
                    .map(|(name, values)| (name.to_string(), FloatVector { values }))
                    .collect(),
                subject_id: subject_id.to_string(),
                received_unix_ms: analyzed_unix_ms,
            });
        }
        if self.limits.recent_max == 0 {
            return id;
        }
        let size = ENTRY_OVERHEAD
            + VERDICT_BYTES
            + 2 * id.len()
            + text.len()
            + model_version.len()
            + subject_id.len()
            + tenant.len()
            + features.bytes();
        let entry = Arc::new(Recent {
            text: text.to_string(),
            features,
            model_version: model_version.to_string(),
            subject_id: subject_id.to_string(),
            tenant: tenant.to_string(),
            verdict,
            analyzed_unix_ms,
            corrected: AtomicBool::new(false),
            at: Instant::now(),
            size,
        });
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_id.insert(id.clone(), entry);
        inner.order.push_back(id.clone());
        inner.bytes += size;
        self.evict(&mut inner);
        id
    }

    pub fn get(&self, id: &str) -> Option<Arc<Recent>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut inner);
        inner.by_id.get(id).cloned()
    }

    /// `tenant`'s analyses not corrected yet, with their ids.
    pub fn uncorrected(&self, tenant: &str) -> Vec<(String, Arc<Recent>)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut inner);
        inner
            .by_id
            .iter()
            .filter(|(_, e)| e.tenant == tenant && !e.corrected())
            .map(|(id, e)| (id.clone(), Arc::clone(e)))
            .collect()
    }

    /// Drops every analysis of `subject_id` (their ids leave the order as they come
    /// to its front), also from the traffic not yet sent; returns how many analyses.
    pub fn forget(&self, subject_id: &str) -> usize {
        if let Some(traffic) = &self.traffic {
            traffic.forget(subject_id);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (before, mut freed) = (inner.by_id.len(), 0);
        inner.by_id.retain(|_, e| {
            let keep = e.subject_id != subject_id;
            if !keep {
                freed += e.size;
            }
            keep
        });
        inner.bytes -= freed;
        before - inner.by_id.len()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }

    fn evict(&self, inner: &mut Inner) {
        let max_age = self.max_age();
        while let Some(oldest) = inner.order.front() {
            let too_many = inner.order.len() > self.limits.recent_max
                || inner.bytes > self.limits.recent_cache_bytes;
            let too_old = inner
                .by_id
                .get(oldest)
                .is_none_or(|e| e.at.elapsed() > max_age);
            if !(too_many || too_old) {
                break;
            }
            if let Some(id) = inner.order.pop_front()
                && let Some(gone) = inner.by_id.remove(&id)
            {
                inner.bytes -= gone.size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(x: f32) -> Features {
        Features {
            text: Some(vec![x; 3]),
            lexicon: vec![x],
            ..Features::default()
        }
    }

    #[test]
    fn bounded_by_count_and_age() {
        let recent = RecentAnalyses::new(limits(2, 3600), true);
        let a = recent.remember(
            "a",
            features(1.0),
            "v0001",
            Owner::default(),
            Verdict::default(),
        );
        let b = recent.remember(
            "b",
            features(2.0),
            "v0001",
            Owner::default(),
            Verdict::default(),
        );
        assert!(recent.get(&a).is_some());
        let c = recent.remember(
            "c",
            features(3.0),
            "v0002",
            Owner::default(),
            Verdict::default(),
        );
        assert!(recent.get(&a).is_none(), "the oldest goes first");
        assert_eq!(recent.get(&b).map(|r| r.text.clone()), Some("b".into()));
        assert_eq!(
            recent.get(&c).map(|r| r.model_version.clone()),
            Some("v0002".into())
        );
        assert_eq!(recent.len(), 2);

        let expiring = RecentAnalyses::new(limits(10, 0), true);
        let id = expiring.remember(
            "x",
            features(1.0),
            "v0001",
            Owner::default(),
            Verdict::default(),
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(expiring.get(&id).is_none(), "expired");

        let off = RecentAnalyses::new(limits(0, 3600), true);
        let id = off.remember(
            "x",
            features(1.0),
            "v0001",
            Owner::default(),
            Verdict::default(),
        );
        assert!(off.get(&id).is_none());
    }

    fn limits(recent_max: usize, recent_max_age_s: u64) -> RecentLimits {
        RecentLimits {
            recent_max,
            recent_max_age_s,
            recent_cache_bytes: 1 << 30,
        }
    }

    #[test]
    fn bounded_by_bytes() {
        let recent = RecentAnalyses::new(
            RecentLimits {
                recent_cache_bytes: 100_000,
                ..limits(1000, 3600)
            },
            true,
        );
        // 10 KB texts: about nine fit in 100 KB, whatever the count bound says.
        let ids: Vec<String> = (0..50)
            .map(|_| {
                recent.remember(
                    &"x".repeat(10_000),
                    features(1.0),
                    "v0001",
                    Owner::default(),
                    Verdict::default(),
                )
            })
            .collect();
        assert!((5..10).contains(&recent.len()), "{} kept", recent.len());
        assert!(recent.get(&ids[0]).is_none(), "the oldest goes first");
        assert!(recent.get(&ids[49]).is_some(), "the newest stays");
        let inner = recent.inner.lock().unwrap_or_else(|e| e.into_inner());
        assert!(inner.bytes <= 100_000, "{} bytes", inner.bytes);
    }

    #[test]
    fn off_without_a_trainer() {
        let recent = RecentAnalyses::new(limits(10, 3600), false);
        let id = recent.remember(
            "x",
            features(1.0),
            "v0001",
            Owner::default(),
            Verdict::default(),
        );
        assert!(recent.get(&id).is_none());
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn each_analysis_is_offered_to_the_traffic_sample_even_when_none_is_kept() {
        let traffic = Traffic::new(1.0);
        let recent = RecentAnalyses::new(limits(0, 3600), true).with_traffic(traffic.clone());
        let owner = Owner {
            tenant: "acme",
            subject_id: "p1",
        };
        let id = recent.remember("x", features(0.5), "acme/v0002", owner, Verdict::default());
        let queued = traffic.as_ref().map(|t| t.queued()).unwrap_or_default();
        let [s] = queued.as_slice() else {
            panic!("{queued:?}");
        };
        assert_eq!(
            (
                s.analysis_id.as_str(),
                s.tenant.as_str(),
                s.model_version.as_str()
            ),
            (id.as_str(), "acme", "acme/v0002")
        );
        assert_eq!(s.subject_id, "p1");
        assert!(s.received_unix_ms > 0);
        let text = s.features.get("text").map(|v| v.values.clone());
        assert_eq!(text, Some(vec![0.5; 3]));
        assert!(s.features.contains_key("lexicon"));
        recent.forget("p1");
        assert!(traffic.is_some_and(|t| t.queued().is_empty()), "forgotten");
    }

    #[test]
    fn forgetting_a_subject_drops_its_analyses_only() {
        let recent = RecentAnalyses::new(limits(10, 3600), true);
        let of = |subject_id| Owner {
            tenant: "default",
            subject_id,
        };
        let a = recent.remember(
            "a",
            features(1.0),
            "v0001",
            of("patient-1"),
            Verdict::default(),
        );
        let b = recent.remember(
            "b",
            features(2.0),
            "v0001",
            of("patient-2"),
            Verdict::default(),
        );
        let c = recent.remember(
            "c",
            features(3.0),
            "v0001",
            of("patient-1"),
            Verdict::default(),
        );
        assert_eq!(recent.forget("patient-1"), 2);
        assert!(recent.get(&a).is_none() && recent.get(&c).is_none());
        assert!(recent.get(&b).is_some());
        assert_eq!(recent.forget("patient-1"), 0);
    }
}
