//! The Chinese lexicons as cntext ships them (YAML data files, read, never imported):
//! DUTIR's seven emotion categories, and HowNet's polarity, negation and degree words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail, ensure};
use jieba_rs::Jieba;

pub const DUTIR_FILE: &str = "lexicon/cntext/zh_common_DUTIR.yaml";
pub const HOWNET_FILE: &str = "lexicon/cntext/zh_common_HowNet.yaml";
pub const STOPWORDS_FILE: &str = "lexicon/cntext/enzh_common_StopWords.yaml";

/// Multipliers of HowNet's degree categories: "very" (极其, 非常), "more" (更, 较),
/// "ish" (有些, 略微).
const DEGREES: [(&str, f32); 3] = [("very", 2.0), ("more", 1.5), ("ish", 0.5)];

/// Polarity of a word only the expansion labelled: half a lexicon word's, as its
/// labels are guesses (about 0.69 right on held-out HowNet words).
const EXPANDED_POLARITY: f32 = 0.5;
/// The columns of an expansion's `lexicon.tsv`.
const EXPANSION_HEADER: &str =
    "word\tcount\temotion\temotion_confidence\tpolarity\tpolarity_confidence";

/// Our label for a DUTIR category: 乐 (happiness) and 好 (good: praise, respect, trust,
/// liking, wishes) are joy; 怒 anger, 哀 sadness, 惧 fear, 恶 disgust, 惊 surprise.
pub fn dutir_emotion(category: &str) -> Option<&'static str> {
    Some(match category {
        "乐" | "好" => "joy",
        "怒" => "anger",
        "哀" => "sadness",
        "惧" => "fear",
        "恶" => "disgust",
        "惊" => "surprise",
        _ => return None,
    })
}

/// Reads cntext's dictionary YAML: the `Dictionary:` mapping of category -> list of
/// words. A narrow reader for this one shape (top-level keys, one mapping level,
/// `- item` lists, plain or quoted scalars), so that no YAML crate is needed.
pub fn parse_cntext_dictionary(text: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_dictionary = false;
    let mut key: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '-']);
        if !indented {
            in_dictionary = line.trim_end() == "Dictionary:";
            key = None;
            continue;
        }
        if !in_dictionary {
            continue;
        }
        let item = line.trim_start();
        if let Some(rest) = item.strip_prefix('-')
            && (rest.is_empty() || rest.starts_with(' '))
        {
            let Some(k) = &key else {
                bail!("line {}: a list item before any key", number + 1);
            };
            let word = unquote(rest.trim());
            let word = word.trim();
            if !word.is_empty() {
                out.get_mut(k)
                    .context("the current key has a list")?
                    .push(word.to_string());
            }
        } else if let Some(k) = item.trim_end().strip_suffix(':') {
            let k = unquote(k.trim()).trim().to_string();
            out.entry(k.clone()).or_default();
            key = Some(k);
        } else {
            bail!("line {}: cannot read {item:?}", number + 1);
        }
    }
    ensure!(!out.is_empty(), "no Dictionary: entries");
    Ok(out)
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].replace("\\\"", "\"")
    } else {
        s.to_string()
    }
}

/// Reads `<assets_dir>/<file>`, one of the cntext dictionaries.
pub fn read_dictionary(
    assets_dir: &Path,
    file: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let path = assets_dir.join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: run `empathy assets fetch`", path.display()))?;
    parse_cntext_dictionary(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// The Chinese stopwords of cntext's stopword file.
pub fn chinese_stopwords(dictionary: &BTreeMap<String, Vec<String>>) -> HashSet<String> {
    dictionary
        .get("chinese")
        .map(|w| w.iter().cloned().collect())
        .unwrap_or_default()
}

/// A Han (CJK ideograph) character.
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2EBEF)
}

/// A word of Han characters only (no digits, Latin or punctuation).
pub fn is_han_word(w: &str) -> bool {
    !w.is_empty() && w.chars().all(is_han)
}

/// jieba's segmentation (HMM on) of a text: its Han words, in order.
pub fn han_words<'a>(jieba: &Jieba, text: &'a str) -> Vec<&'a str> {
    jieba
        .cut(text, true)
        .into_iter()
        .map(|t| t.word)
        .filter(|w| is_han_word(w))
        .collect()
}

/// What the served reader looks words up in. Words a lexicon puts in two opposite
/// classes (DUTIR has 悲伤 under both 哀 and 好) are left out of that lexicon.
#[derive(Debug, Clone, Default)]
pub struct ZhLexicon {
    /// Word -> index into EMOTION_LABELS.
    emotions: HashMap<String, usize>,
    /// Word -> +1 (HowNet pos) or -1 (neg).
    polarity: HashMap<String, f32>,
    negators: HashSet<String>,
    degrees: HashMap<String, f32>,
    /// cntext's Chinese stopwords (的, 了, ...): never named as the words that drove
    /// an answer.
    stopwords: HashSet<String>,
}

impl ZhLexicon {
    pub fn read(assets_dir: &Path) -> anyhow::Result<ZhLexicon> {
        let dutir = read_dictionary(assets_dir, DUTIR_FILE)?;
        let hownet = read_dictionary(assets_dir, HOWNET_FILE)?;
        let stopwords = read_dictionary(assets_dir, STOPWORDS_FILE)?;
        let mut lexicon = ZhLexicon::from_dictionaries(&dutir, &hownet);
        lexicon.stopwords = chinese_stopwords(&stopwords);
        Ok(lexicon)
    }

    /// DUTIR and HowNet, plus the expansion in `<assets_dir>/<expansion>` if given.
    pub fn read_with(assets_dir: &Path, expansion: Option<&str>) -> anyhow::Result<ZhLexicon> {
        let mut lexicon = ZhLexicon::read(assets_dir)?;
        if let Some(dir) = expansion {
            let path = assets_dir.join(dir).join("lexicon.tsv");
            let tsv = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the expanded lexicon {}", path.display()))?;
            lexicon
                .add_expansion(&tsv)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Ok(lexicon)
    }

    pub fn from_dictionaries(
        dutir: &BTreeMap<String, Vec<String>>,
        hownet: &BTreeMap<String, Vec<String>>,
    ) -> ZhLexicon {
        let label_index = |label: &str| {
            empathy_proto::EMOTION_LABELS
                .iter()
                .position(|l| *l == label)
        };
        let polarity: HashMap<String, f32> = unambiguous(hownet, |c| match c {
            "pos" => Some(1),
            "neg" => Some(0),
            _ => None,
        })
        .into_iter()
        .map(|(w, p)| (w, if p == 1 { 1.0 } else { -1.0 }))
        .collect();
        let emotions = emotions_of(dutir, &polarity, |c| dutir_emotion(c).and_then(label_index));
        let negators = hownet.get("deny").into_iter().flatten().cloned().collect();
        let mut degrees = HashMap::new();
        for (category, factor) in DEGREES {
            for w in hownet.get(category).into_iter().flatten() {
                degrees.entry(w.clone()).or_insert(factor);
            }
        }
        ZhLexicon {
            emotions,
            polarity,
            negators,
            degrees,
            stopwords: HashSet::new(),
        }
    }

    /// The emotion (EMOTION_LABELS index) DUTIR files `word` under.
    pub fn emotion(&self, word: &str) -> Option<usize> {
        self.emotions.get(word).copied()
    }

    /// HowNet's polarity of `word`, else the one its DUTIR emotion implies (joy +1;
    /// anger, disgust, fear, sadness -1; surprise none).
    pub fn polarity(&self, word: &str) -> Option<f32> {
        self.polarity.get(word).copied().or_else(|| {
            let label = empathy_proto::EMOTION_LABELS[self.emotion(word)?];
            match label {
                "joy" => Some(1.0),
                "surprise" | "neutral" => None,
                _ => Some(-1.0),
            }
        })
    }

    /// HowNet's polarity of `word` alone: +1 or -1 for its evaluation words.
    pub fn evaluation(&self, word: &str) -> Option<f32> {
        self.polarity.get(word).copied()
    }

    /// Adds the words of a Chinese lexicon expansion's `lexicon.tsv` (`empathy lexicon
    /// expand --language zh`) that neither lexicon knows: their emotion, and their
    /// polarity at `EXPANDED_POLARITY`. Returns how many words it added.
    pub fn add_expansion(&mut self, tsv: &str) -> anyhow::Result<usize> {
        let mut lines = tsv.lines();
        ensure!(
            lines.next().map(str::trim_end) == Some(EXPANSION_HEADER),
            "not a lexicon expansion (its header is not {EXPANSION_HEADER:?})"
        );
        let mut added = 0;
        for (number, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split('\t').collect();
            let [word, _, emotion, _, polarity, _] = cells[..] else {
                bail!("line {}: expected 6 columns", number + 2);
            };
            if self.emotion(word).is_some() || self.polarity(word).is_some() {
                continue;
            }
            let index = empathy_proto::EMOTION_LABELS
                .iter()
                .position(|l| *l == emotion);
            let sign = match polarity {
                "positive" => Some(EXPANDED_POLARITY),
                "negative" => Some(-EXPANDED_POLARITY),
                _ => None,
            };
            if let Some(k) = index {
                self.emotions.insert(word.to_string(), k);
            }
            if let Some(p) = sign {
                self.polarity.insert(word.to_string(), p);
            }
            added += usize::from(index.is_some() || sign.is_some());
        }
        Ok(added)
    }

    pub fn is_stopword(&self, word: &str) -> bool {
        self.stopwords.contains(word)
    }

    pub fn is_negator(&self, word: &str) -> bool {
        self.negators.contains(word)
    }

    pub fn degree(&self, word: &str) -> Option<f32> {
        self.degrees.get(word).copied()
    }

    /// Words with an emotion or a polarity.
    pub fn len(&self) -> usize {
        let mut words: HashSet<&String> = self.emotions.keys().collect();
        words.extend(self.polarity.keys());
        words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Word -> DUTIR emotion. A word filed under several (开心 is under 乐 and 恶) keeps
/// the one of its HowNet polarity when exactly one fits it (joy for positive words,
/// one of anger, disgust, fear, sadness for negative ones); else it has none.
fn emotions_of(
    dutir: &BTreeMap<String, Vec<String>>,
    polarity: &HashMap<String, f32>,
    class_of: impl Fn(&str) -> Option<usize>,
) -> HashMap<String, usize> {
    let joy = empathy_proto::EMOTION_LABELS
        .iter()
        .position(|l| *l == "joy");
    let surprise = empathy_proto::EMOTION_LABELS
        .iter()
        .position(|l| *l == "surprise");
    classes_of(dutir, class_of)
        .into_iter()
        .filter_map(|(w, set)| {
            let fits: Vec<usize> = match polarity.get(&w) {
                _ if set.len() == 1 => set.into_iter().collect(),
                Some(&p) if p > 0.0 => set.into_iter().filter(|&c| Some(c) == joy).collect(),
                Some(_) => set
                    .into_iter()
                    .filter(|&c| Some(c) != joy && Some(c) != surprise)
                    .collect(),
                None => Vec::new(),
            };
            (fits.len() == 1).then(|| (w, fits[0]))
        })
        .collect()
}

/// Word -> the set of classes `class_of` puts it in.
fn classes_of(
    dictionary: &BTreeMap<String, Vec<String>>,
    class_of: impl Fn(&str) -> Option<usize>,
) -> HashMap<String, HashSet<usize>> {
    let mut classes: HashMap<String, HashSet<usize>> = HashMap::new();
    for (category, words) in dictionary {
        let Some(class) = class_of(category) else {
            continue;
        };
        for w in words {
            classes.entry(w.clone()).or_default().insert(class);
        }
    }
    classes
}

/// Word -> class for the words `class_of` puts in exactly one class.
fn unambiguous(
    dictionary: &BTreeMap<String, Vec<String>>,
    class_of: impl Fn(&str) -> Option<usize>,
) -> HashMap<String, usize> {
    classes_of(dictionary, class_of)
        .into_iter()
        .filter_map(|(w, set)| (set.len() == 1).then(|| set.into_iter().next().map(|c| (w, c)))?)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A lexicon of a few words, enough for the reader's tests.
    pub(crate) fn small() -> ZhLexicon {
        let dict = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, ws)| (k.to_string(), ws.iter().map(|w| w.to_string()).collect()))
                .collect()
        };
        let dutir = dict(&[
            ("乐", &["开心", "高兴"]),
            ("恶", &["差", "讨厌", "开心"]),
            ("怒", &["生气"]),
            ("惧", &["害怕"]),
            ("哀", &["悲伤", "难过"]),
            ("好", &["悲伤", "满意"]),
        ]);
        let hownet = dict(&[
            ("pos", &["好", "不错", "开心", "常"]),
            ("neg", &["差", "糟糕"]),
            ("deny", &["不", "没有", "非"]),
            ("very", &["太", "很"]),
            ("ish", &["有点"]),
        ]);
        ZhLexicon::from_dictionaries(&dutir, &hownet)
    }

    #[test]
    fn words_signal_what_their_lexicons_say() {
        let lexicon = small();
        let label = |w: &str| lexicon.emotion(w).map(|k| empathy_proto::EMOTION_LABELS[k]);
        assert_eq!(
            label("开心"),
            Some("joy"),
            "under 乐 and 恶; HowNet: positive"
        );
        assert_eq!(label("差"), Some("disgust"));
        assert_eq!(
            label("悲伤"),
            None,
            "filed under 哀 and 好, no polarity: ambiguous"
        );
        assert_eq!(lexicon.polarity("不错"), Some(1.0));
        assert_eq!(
            lexicon.polarity("生气"),
            Some(-1.0),
            "from its DUTIR emotion"
        );
        assert_eq!(lexicon.polarity("桌子"), None);
        assert!(lexicon.is_negator("不") && !lexicon.is_negator("好"));
        assert_eq!(lexicon.degree("太"), Some(2.0));
        assert_eq!(lexicon.degree("有点"), Some(0.5));
    }

    #[test]
    fn an_expansion_adds_only_words_the_lexicons_lack() -> anyhow::Result<()> {
        let mut lexicon = small();
        let tsv = format!(
            "{EXPANSION_HEADER}\n物流\t9\t-\t0\tnegative\t0.8\n开心\t5\tanger\t0.9\tnegative\t0.9\n惊喜\t4\tsurprise\t0.7\t-\t0\n"
        );
        assert_eq!(lexicon.add_expansion(&tsv)?, 2);
        assert_eq!(lexicon.polarity("物流"), Some(-EXPANDED_POLARITY));
        assert_eq!(
            lexicon
                .emotion("惊喜")
                .map(|k| empathy_proto::EMOTION_LABELS[k]),
            Some("surprise")
        );
        assert_eq!(
            lexicon.polarity("开心"),
            Some(1.0),
            "known words keep their labels"
        );
        assert!(lexicon.add_expansion("word\tcount\n").is_err());
        Ok(())
    }

    #[test]
    fn segmentation_keeps_han_words_only() {
        let jieba = Jieba::new();
        let words = han_words(&jieba, "物流很快，2019年买的good书！质量不错。");
        assert!(words.contains(&"物流"), "{words:?}");
        assert!(words.iter().all(|w| is_han_word(w)), "{words:?}");
        assert!(is_han_word("质量") && !is_han_word("") && !is_han_word("A货"));
    }
}
