//! The tweet corpus aggregates a few topics whose label mix differs wildly: airline
//! complaints are 63% negative, driverless-car news 88% neutral, Coachella 61%
//! positive. A model fit on it learns topic shortcuts ("a departure time means a
//! complaint") that a general-purpose service must not have. Training therefore adds
//! each topic's label prior to the network's logits (a product of experts, Clark et
//! al. 2019, "Don't Take the Easy Way Out"), so the network learns what the topic does
//! not explain; serving uses the network alone.

use regex::{Regex, RegexBuilder};

/// Topics by keyword, first match wins; anything else is "other".
const TOPICS: [(&str, &str); 5] = [
    (
        "airline",
        r"@(united|americanair|usairways|southwestair|jetblue|virginamerica)\b",
    ),
    (
        "football",
        r"deflategate|patriots|brady|super ?bowl|belichick|\bnfl\b|seahawks",
    ),
    ("coachella", r"coachella"),
    ("apple", r"apple|aapl|iphone|\bipad|\bios\b"),
    (
        "driverless",
        r"driverless|self[- ]driving|autonomous|robot car|google car",
    ),
];

pub struct TopicTagger {
    patterns: Vec<Regex>,
}

impl TopicTagger {
    pub fn new() -> anyhow::Result<TopicTagger> {
        let patterns = TOPICS
            .iter()
            .map(|(_, p)| RegexBuilder::new(p).case_insensitive(true).build())
            .collect::<Result<_, _>>()?;
        Ok(TopicTagger { patterns })
    }

    /// Number of topics, "other" included.
    pub fn count(&self) -> usize {
        self.patterns.len() + 1
    }

    /// Topic names in index order, "other" last.
    pub fn names() -> Vec<&'static str> {
        TOPICS
            .iter()
            .map(|(name, _)| *name)
            .chain(["other"])
            .collect()
    }

    pub fn tag(&self, text: &str) -> usize {
        self.patterns
            .iter()
            .position(|p| p.is_match(text))
            .unwrap_or(self.patterns.len())
    }
}

/// log p(label | topic) on `indices`, add-one smoothed: the bias expert.
pub fn log_priors(
    labels: &[usize],
    topics: &[usize],
    indices: &[usize],
    count: usize,
) -> Vec<[f32; 3]> {
    let mut counts = vec![[1.0f32; 3]; count];
    for &i in indices {
        counts[topics[i]][labels[i]] += 1.0;
    }
    counts
        .into_iter()
        .map(|c| {
            let total: f32 = c.iter().sum();
            c.map(|n| (n / total).ln())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_topics_and_computes_priors() -> anyhow::Result<()> {
        let tagger = TopicTagger::new()?;
        assert_eq!(tagger.tag("@united lost my bag"), 0);
        assert_eq!(tagger.tag("#DeflateGate again"), 1);
        assert_eq!(tagger.tag("Google's self-driving car"), 4);
        assert_eq!(tagger.tag("The meeting is at 3 pm"), 5);
        let priors = log_priors(&[0, 0, 1, 2], &[0, 0, 0, 1], &[0, 1, 2, 3], 2);
        // Topic 0: counts 1+2, 1+1, 1+0 of 6.
        let p0 = priors[0].map(f32::exp);
        assert!((p0[0] - 0.5).abs() < 1e-6 && (p0[2] - 1.0 / 6.0).abs() < 1e-6);
        let p1 = priors[1].map(f32::exp);
        assert!((p1[2] - 0.5).abs() < 1e-6);
        Ok(())
    }
}
