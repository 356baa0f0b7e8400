//! How an analysis reads in a terminal: sentiment, emotions, the words and turns that
//! weighed, situations, faces, notes.

use empathy_grpc::v1::AnalyzeResponse;

/// A readable summary of an analysis.
pub fn summary(r: &AnalyzeResponse) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(sent) = &r.sentiment {
        let scores: Vec<String> = sent
            .scores
            .iter()
            .map(|l| format!("{} {:.2}", l.label, l.score))
            .collect();
        let unsure = if r.low_confidence {
            "  low confidence"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "sentiment   {:<9} ({}){unsure}",
            sent.label,
            scores.join(", ")
        );
    }
    if let Some(e) = &r.emotions {
        let mut top: Vec<_> = e.scores.iter().collect();
        top.sort_by(|a, b| b.score.total_cmp(&a.score));
        let scores: Vec<String> = top
            .iter()
            .take(3)
            .map(|l| format!("{} {:.2}", l.label, l.score))
            .collect();
        let _ = writeln!(
            s,
            "emotion     {:<9} ({}; from the {})",
            e.top,
            scores.join(", "),
            e.source
        );
    }
    let _ = writeln!(
        s,
        "valence     {:+.2}   arousal {:+.2}",
        r.valence, r.arousal
    );
    if !r.transcript.is_empty() {
        let _ = writeln!(s, "transcript  {}", r.transcript);
    }
    let words: Vec<String> = r
        .attributions
        .iter()
        .filter(|a| a.kind == "lexicon")
        .map(|a| format!("{} ({} {:+.2})", a.name, a.signal, a.weight))
        .collect();
    if !words.is_empty() {
        let _ = writeln!(s, "words       {}", words.join(", "));
    }
    let attention: Vec<String> = r
        .attributions
        .iter()
        .filter(|a| a.kind != "lexicon")
        .map(|a| match a.kind.as_str() {
            "modality" => format!("{} {:.0}%", a.name, a.weight * 100.0),
            "context" => format!("turn {} ({}) {:.0}%", a.name, a.signal, a.weight * 100.0),
            kind => format!("{kind} {} {:.0}%", a.name, a.weight * 100.0),
        })
        .collect();
    if !attention.is_empty() {
        let _ = writeln!(s, "attention   {}", attention.join(", "));
    }
    if let Some(t) = &r.trajectory {
        let flag = if t.escalating { "  ESCALATING" } else { "" };
        let _ = writeln!(s, "trajectory  {}{flag}", t.summary);
    }
    for (i, sit) in r.situations.iter().enumerate() {
        let _ = writeln!(
            s,
            "situation {} {} (feels {}, critic {:.2}, attention {:.0}%)",
            i + 1,
            sit.text,
            if sit.emotion.is_empty() {
                "?"
            } else {
                &sit.emotion
            },
            sit.critic_score,
            sit.attention * 100.0
        );
    }
    for f in &r.faces {
        let top = f
            .emotions
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map_or(String::new(), |e| format!("{} {:.2}", e.label, e.score));
        let _ = writeln!(
            s,
            "face        {:.0}x{:.0} at ({:.0}, {:.0}), score {:.2}: {top}",
            f.width, f.height, f.x, f.y, f.score
        );
    }
    for note in &r.notes {
        let _ = writeln!(s, "note        {note}");
    }
    let _ = writeln!(s, "modalities  {}", r.modalities_used.join(", "));
    for m in &r.modalities_missing {
        let _ = writeln!(s, "  missing   {}: {}", m.modality, m.reason);
    }
    let total = r
        .timings
        .iter()
        .find(|t| t.stage == "total")
        .map_or(0.0, |t| t.ms);
    let _ = writeln!(
        s,
        "model       {}   {:.1} ms   id {}",
        r.model_version, total, r.analysis_id
    );
    s
}

#[cfg(test)]
mod tests {
    use empathy_grpc::v1::{LabelScore, Sentiment};

    use super::*;

    fn answer(low_confidence: bool) -> AnalyzeResponse {
        let score = |label: &str, score: f32| LabelScore {
            label: label.into(),
            score,
        };
        AnalyzeResponse {
            sentiment: Some(Sentiment {
                label: "neutral".into(),
                scores: vec![
                    score("negative", 0.31),
                    score("neutral", 0.42),
                    score("positive", 0.27),
                ],
            }),
            low_confidence,
            notes: vec!["sentiment: low confidence: ...".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_low_confidence_answer_says_so_on_the_sentiment_line() {
        let s = summary(&answer(true));
        let line = s.lines().next().unwrap_or_default();
        assert_eq!(
            line,
            "sentiment   neutral   (negative 0.31, neutral 0.42, positive 0.27)  low confidence"
        );
        assert!(s.contains("note        sentiment: low confidence"), "{s}");
        let s = summary(&answer(false));
        assert!(
            !s.lines()
                .next()
                .unwrap_or_default()
                .contains("low confidence")
        );
    }
}
