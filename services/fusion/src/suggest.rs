//! `EmpathyService.SuggestLabels`: which of the caller's tenant's recent analyses a
//! person should label next. A correction teaches a line most where its answer was a
//! toss-up, or where its own evidence disagreed: so each analysis scores its
//! uncertainty (one minus the margin between the model's two likeliest sentiments)
//! plus the disagreement of the lexicon (VADER's reading, when it reads a clear
//! polarity that is not the model's). Analyses already corrected, and those with no
//! text to show a labeller (an image alone), are left out.

use empathy_grpc::v1::{LabelSuggestion, SuggestLabelsResponse};
use empathy_proto::SENTIMENT_LABELS;
use tonic::Status;

use crate::recent::{RecentAnalyses, Verdict};

/// Suggestions when the request asks for none in particular, and the most it may.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 200;
/// A margin below this between the two likeliest sentiments is a toss-up.
const UNSURE_MARGIN: f32 = 0.2;
/// VADER's compound score from which the lexicon is taken to read a polarity (a word
/// or two of clear sentiment; its own neutral band is ±0.05).
const LEXICON_CLEAR: f32 = 0.25;
const NEGATIVE: usize = 0;
const NEUTRAL: usize = 1;
const POSITIVE: usize = 2;

/// The caller's tenant's analyses most worth labelling, best first, at most `limit`
/// (0 = 20, at most 200).
pub fn suggest(
    recent: &RecentAnalyses,
    tenant: &str,
    limit: u32,
) -> Result<SuggestLabelsResponse, Status> {
    if recent.limits().recent_max == 0 {
        return Err(Status::failed_precondition(
            "this server keeps no recent analyses (it runs without --trainer, or with \
             --recent-max 0), so there are none to suggest for labelling",
        ));
    }
    let limit = match limit as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let mut scored: Vec<_> = recent
        .uncorrected(tenant)
        .into_iter()
        .filter(|(_, r)| !r.text.trim().is_empty())
        .map(|(id, r)| (Worth::of(&r.verdict), id, r))
        .collect();
    // Best first; among equals the newest, which its author remembers best.
    scored.sort_by(|a, b| {
        (b.0.score.total_cmp(&a.0.score)).then(b.2.analyzed_unix_ms.cmp(&a.2.analyzed_unix_ms))
    });
    let suggestions = scored
        .into_iter()
        .take(limit)
        .map(|(worth, analysis_id, r)| LabelSuggestion {
            analysis_id,
            text: r.text.clone(),
            sentiment: SENTIMENT_LABELS[worth.top].to_string(),
            confidence: r.verdict.sentiment[worth.top],
            score: worth.score,
            why: worth.why,
            model_version: r.model_version.clone(),
            analyzed_unix_ms: r.analyzed_unix_ms,
        })
        .collect();
    Ok(SuggestLabelsResponse { suggestions })
}

/// How much labelling one analysis would teach, and why.
#[derive(Debug)]
struct Worth {
    score: f32,
    why: String,
    /// The model's answer (index into SENTIMENT_LABELS).
    top: usize,
}

impl Worth {
    fn of(v: &Verdict) -> Worth {
        let s = v.sentiment;
        let mut order = [NEGATIVE, NEUTRAL, POSITIVE];
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        let [top, second, _] = order;
        let margin = (s[top] - s[second]).clamp(0.0, 1.0);
        let unsure = margin < UNSURE_MARGIN;
        let c = v.lexicon_compound;
        let lexicon = if c >= LEXICON_CLEAR {
            Some(POSITIVE)
        } else if c <= -LEXICON_CLEAR {
            Some(NEGATIVE)
        } else {
            None
        };
        // Opposite polarities disagree fully; a polar lexicon against a neutral
        // answer, half as much.
        let disagreement = match lexicon {
            Some(l) if l != top && top == NEUTRAL => c.abs() / 2.0,
            Some(l) if l != top => c.abs(),
            _ => 0.0,
        };
        let label = |i: usize| SENTIMENT_LABELS[i];
        let mut why = Vec::new();
        if let Some(l) = lexicon.filter(|_| disagreement > 0.0) {
            why.push(format!(
                "the lexicon reads {} (VADER {c:+.2}), the model {}",
                label(l),
                label(top)
            ));
        }
        if unsure {
            why.push(format!(
                "the model is unsure: {} {:.2} vs {} {:.2}",
                label(top),
                s[top],
                label(second),
                s[second]
            ));
        } else if why.is_empty() {
            why.push(format!(
                "the model reads {} {:.2}, then {} {:.2}",
                label(top),
                s[top],
                label(second),
                s[second]
            ));
        }
        Worth {
            score: 1.0 - margin + disagreement,
            why: why.join("; "),
            top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recent::{Features, Owner, RecentLimits};

    fn cache(recent_max: usize) -> RecentAnalyses {
        let limits = RecentLimits {
            recent_max,
            recent_max_age_s: 3600,
            recent_cache_bytes: 1 << 20,
        };
        RecentAnalyses::new(limits, true)
    }

    fn analyse(
        recent: &RecentAnalyses,
        tenant: &str,
        text: &str,
        sentiment: [f32; 3],
        lexicon_compound: f32,
    ) -> String {
        let owner = Owner {
            tenant,
            subject_id: "",
        };
        let verdict = Verdict {
            sentiment,
            lexicon_compound,
        };
        recent.remember(text, Features::default(), "v0001", owner, verdict)
    }

    fn texts(r: &SuggestLabelsResponse) -> Vec<&str> {
        r.suggestions.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn the_unsure_and_the_contradicted_come_first() {
        let recent = cache(100);
        analyse(&recent, "acme", "sure and agreed", [0.05, 0.05, 0.9], 0.6);
        analyse(&recent, "acme", "toss-up", [0.38, 0.21, 0.41], 0.0);
        analyse(&recent, "acme", "contradicted", [0.1, 0.1, 0.8], -0.6);
        analyse(&recent, "acme", "sure, no words", [0.1, 0.1, 0.8], 0.0);
        analyse(&recent, "acme", "", [0.34, 0.33, 0.33], -0.9);
        let r = suggest(&recent, "acme", 0).unwrap_or_default();
        assert_eq!(
            texts(&r),
            [
                "toss-up",
                "contradicted",
                "sure, no words",
                "sure and agreed"
            ],
            "an analysis without text is not suggested"
        );
        let [toss_up, contradicted, plain, ..] = r.suggestions.as_slice() else {
            panic!("{r:?}");
        };
        assert_eq!(
            toss_up.why,
            "the model is unsure: positive 0.41 vs negative 0.38"
        );
        assert_eq!(
            (toss_up.sentiment.as_str(), toss_up.confidence),
            ("positive", 0.41)
        );
        assert_eq!(
            contradicted.why,
            "the lexicon reads negative (VADER -0.60), the model positive"
        );
        assert!((contradicted.score - (0.3 + 0.6)).abs() < 1e-5);
        assert_eq!(
            plain.why,
            "the model reads positive 0.80, then negative 0.10"
        );
        assert!(r.suggestions.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn a_neutral_answer_against_a_clear_lexicon_counts_half() {
        let w = Worth::of(&Verdict {
            sentiment: [0.1, 0.8, 0.1],
            lexicon_compound: 0.6,
        });
        assert!((w.score - (0.3 + 0.3)).abs() < 1e-5, "{w:?}");
        assert_eq!(
            w.why,
            "the lexicon reads positive (VADER +0.60), the model neutral"
        );
        let both = Worth::of(&Verdict {
            sentiment: [0.46, 0.1, 0.44],
            lexicon_compound: 0.5,
        });
        assert_eq!(
            both.why,
            "the lexicon reads positive (VADER +0.50), the model negative; the model is \
             unsure: negative 0.46 vs positive 0.44"
        );
    }

    #[test]
    fn only_the_callers_tenant_and_nothing_corrected() {
        let recent = cache(100);
        let mine = analyse(&recent, "acme", "mine", [0.4, 0.2, 0.4], 0.0);
        analyse(&recent, "other", "theirs", [0.34, 0.33, 0.33], 0.0);
        let corrected = analyse(&recent, "acme", "corrected", [0.34, 0.33, 0.33], 0.0);
        if let Some(r) = recent.get(&corrected) {
            r.mark_corrected();
        }
        let r = suggest(&recent, "acme", 0).unwrap_or_default();
        assert_eq!(texts(&r), ["mine"]);
        assert_eq!(r.suggestions[0].analysis_id, mine);
        assert_eq!(
            texts(&suggest(&recent, "other", 0).unwrap_or_default()),
            ["theirs"]
        );
        assert!(
            suggest(&recent, "nobody", 0)
                .unwrap_or_default()
                .suggestions
                .is_empty()
        );
    }

    #[test]
    fn the_limit_defaults_to_20_and_stops_at_200() {
        let recent = cache(1000);
        for i in 0..250 {
            analyse(&recent, "acme", &format!("t{i}"), [0.3, 0.3, 0.4], 0.0);
        }
        let n = |limit| {
            suggest(&recent, "acme", limit)
                .map(|r| r.suggestions.len())
                .ok()
        };
        assert_eq!(n(0), Some(20));
        assert_eq!(n(5), Some(5));
        assert_eq!(n(10_000), Some(200));
    }

    #[test]
    fn a_server_that_keeps_nothing_says_so() {
        let err = suggest(&cache(0), "acme", 0).err();
        assert_eq!(
            err.as_ref().map(Status::code),
            Some(tonic::Code::FailedPrecondition)
        );
        assert!(err.is_some_and(|e| e.message().contains("--recent-max 0")));
    }
}
