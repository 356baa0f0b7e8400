//! Reading a Chinese text: jieba's words, the lexicon words among them with negation
//! and degree words applied, the sentiment model's features, and the reading itself
//! (sentiment, emotions, and the words that drove them).

use jieba_rs::Jieba;

use crate::lexicon::{ZhLexicon, is_han, is_han_word};
use crate::sentiment::{SentimentModel, SparseFeatures, slot, three_way};

/// How many words before a lexicon word a negation or degree word may stand (within
/// the same clause): 不是很好 reaches 好 from 不 across 是 and 很.
const SCOPE: usize = 3;
/// A negated negative word is weakly positive (不差 "not bad"); a negated positive
/// word is negative (不好 "not good").
const NEGATED_NEGATIVE: f32 = -0.5;
const NEGATED_POSITIVE: f32 = -1.0;
/// Share of an emotion an evaluation word (HowNet, no DUTIR emotion: 差 "poor", 不错
/// "not bad") carries: DUTIR files praise (赞扬) under 好, which we read as joy, and
/// criticism (贬责) under 恶, disgust; an evaluation says less about feeling than an
/// emotion word.
const EVALUATION: f32 = 0.5;
/// One-character negation and degree words that jieba leaves fused to the word they
/// modify (不好, 太差, 很开心): split off when the rest is a lexicon word. Others, such
/// as 非 (非常 "very" is a word of its own), form words and are not split off.
const PREFIXES: [&str; 11] = [
    "不", "没", "未", "别", "太", "很", "最", "更", "挺", "超", "真",
];
/// Neutral's weight beside the emotion words'.
const NEUTRAL_WEIGHT: f32 = 0.4;
/// Most words an answer names.
const MAX_WORDS: usize = 8;

const DISGUST: usize = 1;
const JOY: usize = 3;
const SADNESS: usize = 4;
const NEUTRAL: usize = 6;

/// A lexicon word as the text uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub word: String,
    /// EMOTION_LABELS index after negation (不开心: sadness), if any.
    pub emotion: Option<usize>,
    /// How much of it the word carries (its degree; less for an evaluation word).
    pub emotion_weight: f32,
    /// Signed polarity after negation and degree.
    pub polarity: f32,
    /// The degree words' factor (1 without one).
    pub degree: f32,
    pub negated: bool,
}

/// A reading of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// SENTIMENT_LABELS order.
    pub sentiment: [f32; 3],
    /// EMOTION_LABELS order: each emotion's lexicon weight over (NEUTRAL_WEIGHT + all
    /// weights), neutral NEUTRAL_WEIGHT over the same: a text without emotion or
    /// evaluation words is neutral, and one with any shows it on top.
    pub emotions: [f32; 7],
    /// (word, signed weight, signal), strongest first.
    pub words: Vec<(String, f32, String)>,
}

/// Where sentiment comes from.
pub enum SentimentSource {
    /// The trained model (its lexicon features included): negative, neutral and
    /// positive, neutral learned from news reporting.
    Model(SentimentModel),
    /// The lexicon alone: p(positive) = sigmoid(2 x the signed sum of its words). The
    /// baseline the model is measured against.
    Lexicon,
}

pub struct ChineseReader {
    jieba: Jieba,
    lexicon: ZhLexicon,
    sentiment: SentimentSource,
}

fn is_clause_break(token: &str) -> bool {
    token.chars().all(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '，' | '。' | '！' | '？' | '；' | '、' | ',' | '.' | '!' | '?' | ';' | '…' | '~'
            )
    })
}

impl ChineseReader {
    pub fn new(lexicon: ZhLexicon, sentiment: SentimentSource) -> ChineseReader {
        ChineseReader {
            jieba: Jieba::new(),
            lexicon,
            sentiment,
        }
    }

    /// jieba's tokens (HMM on), whitespace dropped, with a negation or degree word
    /// split off the front of a word the lexicon does not know when the rest is one it
    /// does: jieba keeps 不好 and 太差 whole.
    pub fn tokens<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        for t in self.jieba.cut(text, true) {
            let w = t.word;
            if w.trim().is_empty() {
                continue;
            }
            match self.split_modifier(w) {
                Some((modifier, rest)) => out.extend([modifier, rest]),
                None => out.push(w),
            }
        }
        out
    }

    fn is_modifier(&self, word: &str) -> bool {
        self.lexicon.is_negator(word) || self.lexicon.degree(word).is_some()
    }

    fn split_modifier<'a>(&self, word: &'a str) -> Option<(&'a str, &'a str)> {
        let lexicon = &self.lexicon;
        let known = |w: &str| lexicon.emotion(w).is_some() || lexicon.polarity(w).is_some();
        if known(word) || self.is_modifier(word) {
            return None;
        }
        let head = PREFIXES.into_iter().find(|p| word.starts_with(p))?;
        let rest = &word[head.len()..];
        (self.is_modifier(head) && known(rest)).then(|| word.split_at(head.len()))
    }

    /// The negation count and degree factor over the words before `at` in its clause.
    fn modifiers(&self, tokens: &[&str], at: usize) -> (usize, f32) {
        let (mut negations, mut degree) = (0, 1.0);
        for &t in tokens[..at].iter().rev().take(SCOPE) {
            if is_clause_break(t) {
                break;
            }
            if self.lexicon.is_negator(t) {
                negations += 1;
            } else if let Some(d) = self.lexicon.degree(t) {
                degree *= d;
            }
        }
        (negations, degree)
    }

    /// The lexicon words of `tokens`, with negation and degree applied.
    pub fn hits(&self, tokens: &[&str]) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (i, &word) in tokens.iter().enumerate() {
            // 非 is HowNet's negator and negative word: here it modifies.
            if self.is_modifier(word) {
                continue;
            }
            let emotion = self.lexicon.emotion(word);
            let polarity = self.lexicon.polarity(word);
            if emotion.is_none() && polarity.is_none() {
                continue;
            }
            let (negations, degree) = self.modifiers(tokens, i);
            let negated = negations % 2 == 1;
            let base = polarity.unwrap_or(0.0);
            let polarity = degree
                * match (negated, base < 0.0) {
                    (false, _) => base,
                    (true, true) => NEGATED_NEGATIVE * base,
                    (true, false) => NEGATED_POSITIVE * base,
                };
            // 不开心 (not happy) is sad; 不怕 (not afraid) is no emotion at all; an
            // evaluation word feels as its polarity reads after negation.
            let (emotion, emotion_weight) = match (negated, emotion) {
                (false, Some(e)) => (Some(e), degree),
                (true, Some(JOY)) => (Some(SADNESS), degree),
                (true, Some(_)) => (None, 0.0),
                (_, None) if self.lexicon.evaluation(word).is_some() && polarity != 0.0 => {
                    let e = if polarity > 0.0 { JOY } else { DISGUST };
                    (Some(e), EVALUATION * degree)
                }
                (_, None) => (None, 0.0),
            };
            hits.push(Hit {
                word: word.to_string(),
                emotion,
                emotion_weight,
                polarity,
                degree,
                negated,
            });
        }
        hits
    }

    /// The sentiment model's features of `text`.
    pub fn features(&self, text: &str) -> SparseFeatures {
        let tokens = self.tokens(text);
        self.features_of(text, &tokens, &self.hits(&tokens))
    }

    fn features_of(&self, text: &str, tokens: &[&str], hits: &[Hit]) -> SparseFeatures {
        let mut present = Vec::with_capacity(4 * tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            present.push(slot("w", t));
            if let Some(next) = tokens.get(i + 1) {
                present.push(slot("b", &format!("{t}|{next}")));
            }
            // A word in a negation's scope is a feature of its own (不|满意 ≠ 满意).
            if self.modifiers(tokens, i).0 % 2 == 1 && !self.lexicon.is_negator(t) {
                present.push(slot("n", t));
            }
        }
        let han: Vec<char> = text.chars().filter(|&c| is_han(c)).collect();
        for pair in han.windows(2) {
            present.push(slot("c", &pair.iter().collect::<String>()));
        }
        let positive: f32 = hits.iter().map(|h| h.polarity.max(0.0)).sum();
        let negative: f32 = hits.iter().map(|h| (-h.polarity).max(0.0)).sum();
        let real = [
            (slot("lexicon", "positive"), positive.min(4.0)),
            (slot("lexicon", "negative"), negative.min(4.0)),
        ];
        SparseFeatures::from_parts(present, &real)
    }

    /// Reads `text`.
    pub fn read(&self, text: &str) -> Reading {
        let tokens = self.tokens(text);
        let hits = self.hits(&tokens);
        let mut words: Vec<(String, f32, String)> = hits
            .iter()
            .map(|h| {
                let signal = match h.emotion {
                    Some(k) => empathy_proto::EMOTION_LABELS[k],
                    None if h.polarity >= 0.0 => "positive",
                    None => "negative",
                };
                let weight = if h.polarity != 0.0 {
                    h.polarity
                } else {
                    h.degree
                };
                (h.word.clone(), weight, signal.to_string())
            })
            .collect();
        let evidence: f32 = hits.iter().map(|h| h.polarity.abs()).sum();
        let sentiment = match &self.sentiment {
            SentimentSource::Model(model) => {
                let x = self.features_of(text, &tokens, &hits);
                // The words the model leaned on most, beside the lexicon's.
                let mut learned: Vec<(String, f32)> = tokens
                    .iter()
                    .filter(|t| is_han_word(t) && !self.is_modifier(t))
                    .filter(|t| !self.lexicon.is_stopword(t))
                    .filter(|t| !hits.iter().any(|h| h.word == **t))
                    .map(|t| (t.to_string(), model.lean(slot("w", t))))
                    .collect();
                learned.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
                learned.dedup_by(|a, b| a.0 == b.0);
                for (word, w) in learned.into_iter().take(3).filter(|(_, w)| w.abs() > 0.5) {
                    let signal = if w > 0.0 { "positive" } else { "negative" };
                    words.push((word, w, signal.to_string()));
                }
                model.probabilities(&x)
            }
            SentimentSource::Lexicon => {
                let sum: f32 = hits.iter().map(|h| h.polarity).sum();
                three_way(1.0 / (1.0 + (-2.0 * sum).exp()), evidence)
            }
        };
        words.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        words.truncate(MAX_WORDS);

        let mut weights = [0f32; 7];
        for h in &hits {
            if let Some(k) = h.emotion {
                weights[k] += h.emotion_weight;
            }
        }
        let total: f32 = weights.iter().sum();
        let mut emotions = weights.map(|w| w / (NEUTRAL_WEIGHT + total));
        emotions[NEUTRAL] = NEUTRAL_WEIGHT / (NEUTRAL_WEIGHT + total);
        Reading {
            sentiment,
            emotions,
            words,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexicon::tests::small;

    fn reader() -> ChineseReader {
        ChineseReader::new(small(), SentimentSource::Lexicon)
    }

    fn top(scores: &[f32]) -> usize {
        (0..scores.len()).fold(0, |b, k| if scores[k] > scores[b] { k } else { b })
    }

    #[test]
    fn negation_and_degree_change_what_a_word_says() {
        let r = reader();
        let hit = |text: &str, word: &str| {
            let tokens = r.tokens(text);
            r.hits(&tokens).into_iter().find(|h| h.word == word)
        };
        let plain = hit("这个很好", "好").map(|h| h.polarity);
        assert_eq!(plain, Some(2.0), "很 (very) doubles it");
        let negated = hit("这个不好", "好");
        assert!(
            negated
                .as_ref()
                .is_some_and(|h| h.negated && h.polarity < 0.0),
            "{negated:?}"
        );
        assert_eq!(hit("服务太差了", "差").map(|h| h.polarity), Some(-2.0));
        let not_bad = hit("其实不差", "差").map(|h| h.polarity);
        assert!(not_bad.is_some_and(|p| p > 0.0 && p < 1.0), "{not_bad:?}");
        // 非常 (very) is a word, not 非 (not) + 常.
        assert_eq!(r.tokens("非常好"), ["非常", "好"]);
        // A clause break ends negation's reach.
        assert_eq!(hit("我不去，很好", "好").map(|h| h.negated), Some(false));
        // 不开心: sad, not happy.
        let unhappy = hit("我不开心", "开心").and_then(|h| h.emotion);
        assert_eq!(unhappy, Some(SADNESS));
    }

    #[test]
    fn a_reading_names_its_words_and_is_neutral_without_them() {
        let r = reader();
        let bad = r.read("这家店的服务太差了，我再也不来了。");
        assert_eq!(top(&bad.sentiment), 0, "{bad:?}");
        assert_eq!(empathy_proto::EMOTION_LABELS[top(&bad.emotions)], "disgust");
        assert_eq!(
            bad.words[0],
            ("差".to_string(), -2.0, "disgust".to_string())
        );
        let glad = r.read("今天我很开心！");
        assert_eq!(top(&glad.sentiment), 2);
        assert_eq!(empathy_proto::EMOTION_LABELS[top(&glad.emotions)], "joy");
        // An evaluation word alone: criticism reads as disgust (DUTIR's 贬责 is under 恶).
        let poor = r.read("质量糟糕");
        assert_eq!(
            empathy_proto::EMOTION_LABELS[top(&poor.emotions)],
            "disgust"
        );
        let not_poor = r.read("质量不糟糕");
        assert_eq!(
            empathy_proto::EMOTION_LABELS[top(&not_poor.emotions)],
            "joy"
        );
        let plain = r.read("我明天去北京。");
        assert_eq!(plain.sentiment, [0.0, 1.0, 0.0]);
        assert_eq!(plain.emotions[NEUTRAL], 1.0);
        assert!(plain.words.is_empty());
    }

    #[test]
    fn features_know_negation() {
        let r = reader();
        let plain = r.features("很满意");
        let negated = r.features("不满意");
        assert!(plain.indices.contains(&slot("w", "满意")));
        assert!(negated.indices.contains(&slot("n", "满意")));
        assert!(!plain.indices.contains(&slot("n", "满意")));
    }
}
