//! VADER's constants and word lists, copied from vaderSentiment.py v3.3.2
//! (C.J. Hutto, MIT licence, <https://github.com/cjhutto/vaderSentiment>).

/// Booster words raise the intensity of the next sentiment word by this much.
pub const B_INCR: f64 = 0.293;
/// Dampener words lower it by this much.
pub const B_DECR: f64 = -0.293;
/// An ALL-CAPS sentiment word in mixed-case text gains this much.
pub const C_INCR: f64 = 0.733;
/// A negated sentiment word is scaled by this.
pub const N_SCALAR: f64 = -0.74;
/// The compound score is `sum / sqrt(sum^2 + ALPHA)`.
pub const ALPHA: f64 = 15.0;

#[rustfmt::skip]
pub const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't", "aren't",
    "can't", "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt", "havent",
    "isnt", "mightnt", "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't", "isn't",
    "mightn't", "mustn't", "neednt", "needn't", "never", "none", "nope", "nor", "not", "nothing",
    "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent", "oughtn't", "shan't",
    "shouldn't", "uh-uh", "wasn't", "weren't", "without", "wont", "wouldnt", "won't", "wouldn't",
    "rarely", "seldom", "despite",
];

#[rustfmt::skip]
const INCR_WORDS: &[&str] = &[
    "absolutely", "amazingly", "awfully", "completely", "considerable", "considerably",
    "decidedly", "deeply", "effing", "enormous", "enormously", "entirely", "especially",
    "exceptional", "exceptionally", "extreme", "extremely", "fabulously", "flipping", "flippin",
    "frackin", "fracking", "fricking", "frickin", "frigging", "friggin", "fully", "fuckin",
    "fucking", "fuggin", "fugging", "greatly", "hella", "highly", "hugely", "incredible",
    "incredibly", "intensely", "major", "majorly", "more", "most", "particularly", "purely",
    "quite", "really", "remarkably", "so", "substantially", "thoroughly", "total", "totally",
    "tremendous", "tremendously", "uber", "unbelievably", "unusually", "utter", "utterly", "very",
];

#[rustfmt::skip]
const DECR_WORDS: &[&str] = &[
    "almost", "barely", "hardly", "just enough", "kind of", "kinda", "kindof", "kind-of", "less",
    "little", "marginal", "marginally", "occasional", "occasionally", "partly", "scarce",
    "scarcely", "slight", "slightly", "somewhat", "sort of", "sorta", "sortof", "sort-of",
];

/// The scalar a booster or dampener word (or bigram) adds, if it is one.
pub fn booster(word: &str) -> Option<f64> {
    if INCR_WORDS.contains(&word) {
        Some(B_INCR)
    } else if DECR_WORDS.contains(&word) {
        Some(B_DECR)
    } else {
        None
    }
}

/// Idioms and phrases whose valence replaces that of the word they contain.
pub const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.1),
    ("broken heart", -2.9),
];

pub fn special_case(phrase: &str) -> Option<f64> {
    SPECIAL_CASES
        .iter()
        .find(|(p, _)| *p == phrase)
        .map(|(_, v)| *v)
}
