//! Features of recent analyses, so feedback on one can be learnt from without the
//! client resending its inputs. Bounded by count and by age (both flags); the oldest
//! entries go first. Memory per entry is about 1.7 KB for text (384 + 24 floats).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use empathy_model::ModelInputs;

/// The inputs the model saw, as the trainer stores them.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub text: Option<Vec<f32>>,
    pub lexicon: Vec<f32>,
    pub speech: Option<Vec<f32>>,
    pub image: Option<Vec<f32>>,
}

impl Features {
    pub fn of(inputs: &ModelInputs) -> Features {
        Features {
            text: inputs.text.clone(),
            lexicon: inputs.lexicon.features.clone(),
            speech: inputs.speech.clone(),
            image: inputs.image.clone(),
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
        out
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
    at: Instant,
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
}

pub struct RecentAnalyses {
    limits: RecentLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Recent>>,
    order: VecDeque<String>,
}

impl RecentAnalyses {
    pub fn new(limits: RecentLimits) -> RecentAnalyses {
        RecentAnalyses {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> RecentLimits {
        self.limits
    }

    fn max_age(&self) -> Duration {
        Duration::from_secs(self.limits.recent_max_age_s)
    }

    /// Keeps an analysis (of `subject_id`'s input, "" if none) under a new id and
    /// returns the id.
    pub fn remember(
        &self,
        text: &str,
        features: Features,
        model_version: &str,
        subject_id: &str,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        if self.limits.recent_max == 0 {
            return id;
        }
        let entry = Arc::new(Recent {
            text: text.to_string(),
            features,
            model_version: model_version.to_string(),
            subject_id: subject_id.to_string(),
            at: Instant::now(),
        });
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_id.insert(id.clone(), entry);
        inner.order.push_back(id.clone());
        self.evict(&mut inner);
        id
    }

    pub fn get(&self, id: &str) -> Option<Arc<Recent>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut inner);
        inner.by_id.get(id).cloned()
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
            let too_many = inner.order.len() > self.limits.recent_max;
            let too_old = inner
                .by_id
                .get(oldest)
                .is_none_or(|e| e.at.elapsed() > max_age);
            if !(too_many || too_old) {
                break;
            }
            if let Some(id) = inner.order.pop_front() {
                inner.by_id.remove(&id);
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
        let recent = RecentAnalyses::new(RecentLimits {
            recent_max: 2,
            recent_max_age_s: 3600,
        });
        let a = recent.remember("a", features(1.0), "v0001", "");
        let b = recent.remember("b", features(2.0), "v0001", "");
        assert!(recent.get(&a).is_some());
        let c = recent.remember("c", features(3.0), "v0002", "");
        assert!(recent.get(&a).is_none(), "the oldest goes first");
        assert_eq!(recent.get(&b).map(|r| r.text.clone()), Some("b".into()));
        assert_eq!(
            recent.get(&c).map(|r| r.model_version.clone()),
            Some("v0002".into())
        );
        assert_eq!(recent.len(), 2);

        let expiring = RecentAnalyses::new(RecentLimits {
            recent_max: 10,
            recent_max_age_s: 0,
        });
        let id = expiring.remember("x", features(1.0), "v0001", "");
        std::thread::sleep(Duration::from_millis(5));
        assert!(expiring.get(&id).is_none(), "expired");

        let off = RecentAnalyses::new(RecentLimits {
            recent_max: 0,
            recent_max_age_s: 3600,
        });
        let id = off.remember("x", features(1.0), "v0001", "");
        assert!(off.get(&id).is_none());
    }
}
