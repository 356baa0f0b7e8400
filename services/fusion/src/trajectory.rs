//! The person's feeling over one conversation: a point per analysed turn, the trend of
//! valence over the last few, and whether they are getting more upset.

use empathy_proto::v1::{AnalyzeResponse, Trajectory, TrajectoryPoint};

/// Points kept per conversation (the oldest are dropped).
const MAX_POINTS: usize = 50;
/// Points the trend is fitted over.
const WINDOW: usize = 5;
/// Valence lost per turn, at least, for a conversation to be escalating.
const ESCALATION_SLOPE: f32 = -0.1;

#[derive(Default)]
pub(crate) struct Curve {
    points: Vec<TrajectoryPoint>,
    turns: u32,
}

impl Curve {
    /// Adds the analysed turn and returns the trajectory up to it.
    pub(crate) fn add(&mut self, answer: &AnalyzeResponse) -> Trajectory {
        self.turns += 1;
        self.points.push(TrajectoryPoint {
            turn: self.turns,
            valence: answer.valence,
            arousal: answer.arousal,
            sentiment: answer
                .sentiment
                .as_ref()
                .map(|s| s.label.clone())
                .unwrap_or_default(),
        });
        let excess = self.points.len().saturating_sub(MAX_POINTS);
        self.points.drain(..excess);
        self.trajectory()
    }

    fn trajectory(&self) -> Trajectory {
        let recent = &self.points[self.points.len().saturating_sub(WINDOW)..];
        let trend = slope(recent);
        let negative = recent.last().is_some_and(|p| p.sentiment == "negative");
        let escalating = recent.len() >= 3 && trend <= ESCALATION_SLOPE && negative;
        Trajectory {
            points: self.points.clone(),
            valence_trend: trend,
            escalating,
            summary: summary(recent, trend, escalating),
        }
    }
}

/// Least-squares slope of valence per turn; 0 with fewer than two points.
fn slope(points: &[TrajectoryPoint]) -> f32 {
    let n = points.len() as f32;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = points.iter().map(|p| p.valence).sum::<f32>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, p) in points.iter().enumerate() {
        let dx = x as f32 - mean_x;
        num += dx * (p.valence - mean_y);
        den += dx * dx;
    }
    num / den
}

fn summary(recent: &[TrajectoryPoint], trend: f32, escalating: bool) -> String {
    let (Some(first), Some(last)) = (recent.first(), recent.last()) else {
        return String::new();
    };
    if recent.len() < 2 {
        return format!("first turn: valence {:.2}", last.valence);
    }
    let direction = if escalating {
        "escalating"
    } else if trend <= ESCALATION_SLOPE {
        "getting worse"
    } else if trend >= -ESCALATION_SLOPE {
        "getting better"
    } else {
        "steady"
    };
    format!(
        "{direction}: valence {:.2} -> {:.2} over {} turns",
        first.valence,
        last.valence,
        recent.len()
    )
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::Sentiment;

    use super::*;

    fn answer(valence: f32, label: &str) -> AnalyzeResponse {
        AnalyzeResponse {
            valence,
            sentiment: Some(Sentiment {
                label: label.into(),
                scores: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_person_getting_more_upset_is_escalating() {
        let mut curve = Curve::default();
        let first = curve.add(&answer(0.3, "neutral"));
        assert_eq!((first.valence_trend, first.escalating), (0.0, false));
        assert_eq!(first.summary, "first turn: valence 0.30");
        curve.add(&answer(-0.1, "negative"));
        let t = curve.add(&answer(-0.5, "negative"));
        assert!((t.valence_trend + 0.4).abs() < 1e-5, "{}", t.valence_trend);
        assert!(t.escalating);
        assert_eq!(t.summary, "escalating: valence 0.30 -> -0.50 over 3 turns");
        assert_eq!(
            t.points.iter().map(|p| p.turn).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_calm_or_recovering_conversation_is_not_escalating() {
        let mut curve = Curve::default();
        for v in [-0.6, -0.3, 0.0, 0.4] {
            curve.add(&answer(v, if v < 0.0 { "negative" } else { "positive" }));
        }
        let t = curve.add(&answer(0.5, "positive"));
        assert!(!t.escalating && t.valence_trend > 0.2);
        assert!(t.summary.starts_with("getting better"), "{}", t.summary);
        // Falling but not negative yet: worse, not escalating.
        let mut curve = Curve::default();
        for v in [0.9, 0.6, 0.3] {
            curve.add(&answer(v, "positive"));
        }
        let t = curve.add(&answer(0.1, "neutral"));
        assert!(!t.escalating && t.summary.starts_with("getting worse"));
    }

    #[test]
    fn only_the_last_points_are_kept() {
        let mut curve = Curve::default();
        let mut t = Trajectory::default();
        for _ in 0..(MAX_POINTS + 7) {
            t = curve.add(&answer(0.0, "neutral"));
        }
        assert_eq!(t.points.len(), MAX_POINTS);
        assert_eq!(t.points.last().map(|p| p.turn), Some(MAX_POINTS as u32 + 7));
    }
}
