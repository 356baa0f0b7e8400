//! VADER's rule-based sentiment scorer, reimplemented from vaderSentiment.py v3.3.2
//! (C.J. Hutto, MIT licence). The rules follow the Python code, quirks included, so
//! that the baseline we compare against is VADER's; one deliberate difference: the
//! "but" rule scales words by position (Python looks positions up by value, which
//! misplaces repeated scores).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

use super::vader_words::{ALPHA, C_INCR, N_SCALAR, booster, special_case};

/// VADER's scores for one text plus what the rules saw, for features and attributions.
#[derive(Debug, Clone, Default)]
pub struct VaderOutput {
    /// Tokens after emoji replacement and punctuation stripping, lowercased.
    pub tokens: Vec<String>,
    /// Valence per token after every rule; 0 for words outside the lexicon.
    pub valences: Vec<f64>,
    pub pos: f64,
    pub neg: f64,
    pub neu: f64,
    pub compound: f64,
    /// ALL-CAPS tokens, counted only when the text mixes case (as VADER does).
    pub caps_words: usize,
    pub exclamations: usize,
    pub questions: usize,
    pub has_but: bool,
}

pub struct Vader {
    lexicon: HashMap<String, f64>,
    emoji: HashMap<char, String>,
}

impl Vader {
    pub fn load(dir: &Path) -> anyhow::Result<Vader> {
        let lexicon_path = dir.join("vader_lexicon.txt");
        let text = read(&lexicon_path)?;
        let mut lexicon = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(word), Some(measure)) = (fields.next(), fields.next()) else {
                anyhow::bail!(
                    "{}:{}: expected word<TAB>mean",
                    lexicon_path.display(),
                    n + 1
                );
            };
            let measure: f64 = measure.trim().parse().with_context(|| {
                format!("{}:{}: bad mean {measure:?}", lexicon_path.display(), n + 1)
            })?;
            lexicon.insert(word.to_string(), measure);
        }
        let emoji_path = dir.join("emoji_utf8_lexicon.txt");
        let mut emoji = HashMap::new();
        for line in read(&emoji_path)?.lines() {
            let Some((key, description)) = line.split_once('\t') else {
                continue;
            };
            // VADER walks the text one code point at a time, so only one-code-point
            // emoji can ever match.
            let mut chars = key.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                emoji.insert(c, description.trim().to_string());
            }
        }
        Ok(Vader { lexicon, emoji })
    }

    /// Every lexicon entry and its mean valence, sorted by word.
    pub fn words(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> =
            self.lexicon.iter().map(|(w, v)| (w.clone(), *v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The valence of a lowercased word, if the lexicon has it.
    pub fn valence(&self, word: &str) -> Option<f64> {
        self.lexicon.get(word).copied()
    }

    pub fn polarity(&self, text: &str) -> VaderOutput {
        let text = self.replace_emoji(text);
        let raw: Vec<&str> = text.split_whitespace().map(strip_punc_if_word).collect();
        let tokens: Vec<String> = raw.iter().map(|t| t.to_lowercase()).collect();
        let cap_diff = allcap_differential(&raw);
        let mut valences = Vec::with_capacity(tokens.len());
        for (i, word) in tokens.iter().enumerate() {
            let kind_of = word == "kind" && tokens.get(i + 1).is_some_and(|w| w == "of");
            if booster(word).is_some() || kind_of {
                valences.push(0.0);
            } else {
                valences.push(self.word_valence(&raw, &tokens, i, cap_diff));
            }
        }
        let has_but = but_check(&tokens, &mut valences);
        let caps_words = if cap_diff {
            raw.iter().filter(|w| is_upper(w)).count()
        } else {
            0
        };
        let exclamations = text.matches('!').count();
        let questions = text.matches('?').count();
        let mut out = VaderOutput {
            caps_words,
            exclamations,
            questions,
            has_but,
            ..VaderOutput::default()
        };
        score_valence(&valences, exclamations, questions, &mut out);
        out.tokens = tokens;
        out.valences = valences;
        out
    }

    fn replace_emoji(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut prev_space = true;
        for c in text.chars() {
            if let Some(description) = self.emoji.get(&c) {
                if !prev_space {
                    out.push(' ');
                }
                out.push_str(description);
                prev_space = false;
            } else {
                out.push(c);
                prev_space = c == ' ';
            }
        }
        out.trim().to_string()
    }

    fn in_lexicon(&self, word: &str) -> bool {
        self.lexicon.contains_key(word)
    }

    fn word_valence(&self, raw: &[&str], lower: &[String], i: usize, cap_diff: bool) -> f64 {
        let Some(base) = self.valence(&lower[i]) else {
            return 0.0;
        };
        let mut valence = base;
        // "no" before another lexicon word negates it instead of counting itself.
        if lower[i] == "no" && lower.get(i + 1).is_some_and(|w| self.in_lexicon(w)) {
            valence = 0.0;
        }
        if (i > 0 && lower[i - 1] == "no")
            || (i > 1 && lower[i - 2] == "no")
            || (i > 2 && lower[i - 3] == "no" && matches!(lower[i - 1].as_str(), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        if is_upper(raw[i]) && cap_diff {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for start_i in 0..3 {
            if i > start_i && !self.in_lexicon(&lower[i - start_i - 1]) {
                let mut s = scalar_inc_dec(raw[i - start_i - 1], valence, cap_diff);
                if start_i == 1 {
                    s *= 0.95;
                } else if start_i == 2 {
                    s *= 0.9;
                }
                valence = negation_check(valence + s, lower, start_i, i);
                if start_i == 2 {
                    valence = special_idioms_check(valence, lower, i);
                }
            }
        }
        self.least_check(valence, lower, i)
    }

    fn least_check(&self, valence: f64, lower: &[String], i: usize) -> f64 {
        if i > 0 && lower[i - 1] == "least" && !self.in_lexicon("least") {
            if i > 1 && (lower[i - 2] == "at" || lower[i - 2] == "very") {
                return valence;
            }
            return valence * N_SCALAR;
        }
        valence
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the VADER lexicon file {}: run `empathy assets fetch`",
            path.display()
        )
    })
}

/// A negation word, or any word with "n't" in it.
pub fn is_negation(word: &str) -> bool {
    super::vader_words::NEGATE.contains(&word) || word.contains("n't")
}

/// Python's `str.isupper`: some cased character and no lowercase one.
fn is_upper(word: &str) -> bool {
    word.chars().any(char::is_uppercase) && !word.chars().any(char::is_lowercase)
}

/// Strip leading/trailing ASCII punctuation unless that leaves two characters or
/// fewer, which is likely an emoticon such as ":)".
fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 {
        token
    } else {
        stripped
    }
}

/// True when some but not all tokens are ALL-CAPS: only then is caps emphasis.
fn allcap_differential(words: &[&str]) -> bool {
    let caps = words.iter().filter(|w| is_upper(w)).count();
    let diff = words.len() - caps;
    diff > 0 && diff < words.len()
}

fn scalar_inc_dec(word: &str, valence: f64, cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster(&word.to_lowercase()) else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar = -scalar;
    }
    if is_upper(word) && cap_diff {
        scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
    }
    scalar
}

fn negation_check(valence: f64, lower: &[String], start_i: usize, i: usize) -> f64 {
    let w = |k: usize| lower[i - k].as_str();
    let so_or_this = |k: usize| matches!(w(k), "so" | "this");
    match start_i {
        0 if is_negation(w(1)) => valence * N_SCALAR,
        1 if w(2) == "never" && so_or_this(1) => valence * 1.25,
        1 if w(2) == "without" && w(1) == "doubt" => valence,
        1 if is_negation(w(2)) => valence * N_SCALAR,
        // Python's precedence makes a plain "so"/"this" before the word count too.
        2 if (w(3) == "never" && so_or_this(2)) || so_or_this(1) => valence * 1.25,
        2 if w(3) == "without" && (w(2) == "doubt" || w(1) == "doubt") => valence,
        2 if is_negation(w(3)) => valence * N_SCALAR,
        _ => valence,
    }
}

/// Called with i >= 3 (VADER checks idioms on the third look-back only).
fn special_idioms_check(mut valence: f64, lower: &[String], i: usize) -> f64 {
    let w = |k: usize| lower[k].as_str();
    let before = [
        format!("{} {}", w(i - 1), w(i)),
        format!("{} {} {}", w(i - 2), w(i - 1), w(i)),
        format!("{} {}", w(i - 2), w(i - 1)),
        format!("{} {} {}", w(i - 3), w(i - 2), w(i - 1)),
        format!("{} {}", w(i - 3), w(i - 2)),
    ];
    if let Some(v) = before.iter().find_map(|s| special_case(s)) {
        valence = v;
    }
    if i + 1 < lower.len()
        && let Some(v) = special_case(&format!("{} {}", w(i), w(i + 1)))
    {
        valence = v;
    }
    if i + 2 < lower.len()
        && let Some(v) = special_case(&format!("{} {} {}", w(i), w(i + 1), w(i + 2)))
    {
        valence = v;
    }
    // Booster bigrams such as "kind of" before the word.
    for n_gram in [&before[3], &before[4], &before[2]] {
        if let Some(b) = booster(n_gram) {
            valence += b;
        }
    }
    valence
}

/// Words before the first "but" count half, words after it one and a half.
fn but_check(lower: &[String], valences: &mut [f64]) -> bool {
    let Some(bi) = lower.iter().position(|w| w == "but") else {
        return false;
    };
    for (i, v) in valences.iter_mut().enumerate() {
        if i < bi {
            *v *= 0.5;
        } else if i > bi {
            *v *= 1.5;
        }
    }
    true
}

pub fn normalize(score: f64) -> f64 {
    (score / (score * score + ALPHA).sqrt()).clamp(-1.0, 1.0)
}

fn punctuation_emphasis(exclamations: usize, questions: usize) -> f64 {
    let ep = exclamations.min(4) as f64 * 0.292;
    let qm = match questions {
        0 | 1 => 0.0,
        2 | 3 => questions as f64 * 0.18,
        _ => 0.96,
    };
    ep + qm
}

fn score_valence(valences: &[f64], exclamations: usize, questions: usize, out: &mut VaderOutput) {
    if valences.is_empty() {
        return;
    }
    let emphasis = punctuation_emphasis(exclamations, questions);
    let mut sum: f64 = valences.iter().sum();
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    out.compound = normalize(sum);
    let (mut pos_sum, mut neg_sum, mut neu_count) = (0.0, 0.0, 0.0);
    for &v in valences {
        // The +-1 compensates for neutral words, which count as 1 each.
        if v > 0.0 {
            pos_sum += v + 1.0;
        } else if v < 0.0 {
            neg_sum += v - 1.0;
        } else {
            neu_count += 1.0;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += emphasis;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= emphasis;
    }
    let total = pos_sum + neg_sum.abs() + neu_count;
    out.pos = (pos_sum / total).abs();
    out.neg = (neg_sum / total).abs();
    out.neu = (neu_count / total).abs();
}
