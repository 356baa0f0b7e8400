//! Word lists for emotion evidence (ours): the seed words of each emotion and the
//! suffixes by which a text2emotion stem may extend.

use super::emotion_index::{ANGER, DISGUST, FEAR, JOY, SADNESS, SURPRISE};

/// Common emotion words; they override text2emotion's mapping. Disgust words are all
/// VADER-negative (a test checks it): text2emotion has no disgust.
#[rustfmt::skip]
pub const SEEDS: &[(usize, &[&str])] = &[
    (ANGER, &[
        "angry", "anger", "angered", "angrily", "furious", "fury", "rage", "raging", "enraged",
        "outraged", "outrage", "outrageous", "livid", "irate", "pissed", "annoyed", "annoying",
        "irritated", "irritating", "frustrated", "frustrating", "frustration", "hate", "hated",
        "hates", "hatred", "hostile", "resent", "resentful", "infuriating", "infuriated", "mad",
    ]),
    (DISGUST, &[
        "disgust", "disgusted", "disgusting", "disgustingly", "gross", "yuck", "nasty",
        "revolting", "repulsive", "repulsed", "vile", "sickening", "nauseating", "nauseous",
        "filthy", "foul", "rotten", "creepy", "sleazy", "despicable", "loathe", "loathsome",
        "abhorrent", "repugnant", "distasteful", "ugh", "stinks", "stinky", "sickened", "gag",
    ]),
    (FEAR, &[
        "afraid", "scared", "scary", "fear", "feared", "fearful", "fears", "frightened",
        "frightening", "terrified", "terrifying", "terror", "panic", "panicked", "anxious",
        "anxiety", "worried", "worry", "worrying", "nervous", "dread", "dreading", "horrified",
        "horror", "alarmed", "threatened", "unsafe", "danger", "dangerous",
    ]),
    (JOY, &[
        "happy", "happiness", "happily", "joy", "joyful", "glad", "delighted", "delight",
        "delightful", "love", "loved", "loves", "loving", "lovely", "wonderful", "great",
        "awesome", "excellent", "fantastic", "amazing", "thank", "thanks", "thankful",
        "grateful", "gratitude", "pleased", "enjoy", "enjoyed", "enjoying", "excited", "fun",
        "yay", "cheerful", "proud", "blessed", "smile", "smiling", "laugh", "laughing", "lol",
        "haha", "best", "beautiful", "perfect", "nice", "good", "glorious", "thrilled",
    ]),
    (SADNESS, &[
        "sad", "sadly", "sadness", "unhappy", "depressed", "depressing", "depression",
        "miserable", "heartbroken", "grief", "grieving", "cry", "crying", "cried", "tears",
        "lonely", "sorrow", "sorry", "upset", "disappointed", "disappointing", "disappointment",
        "hopeless", "hurt", "hurts", "miss", "gloomy", "regret", "unfortunately", "tragic",
    ]),
    (SURPRISE, &[
        "surprise", "surprised", "surprising", "surprisingly", "shocked", "shocking", "shock",
        "astonished", "astonishing", "amazed", "stunned", "wow", "whoa", "omg", "unexpected",
        "unexpectedly", "unbelievable", "speechless", "startled",
    ]),
];

#[cfg(test)]
pub fn seeds(emotion: usize) -> &'static [&'static str] {
    SEEDS
        .iter()
        .find(|(k, _)| *k == emotion)
        .map_or(&[], |(_, words)| words)
}

/// Suffixes a text2emotion stem may be extended by ("amaz" + "ing").
#[rustfmt::skip]
pub const SUFFIXES: &[&str] = &[
    "s", "es", "d", "ed", "ing", "ly", "y", "ies", "ied", "ier", "iest", "ily", "iness", "ness",
    "er", "ers", "est", "ment", "ments", "ful", "fully", "ous", "ously", "ity", "ation",
    "ations", "ate", "ated", "ates", "ating", "e", "en", "al", "ally", "ic", "ically", "ive",
    "ively", "able", "ably", "ance", "ence", "ant", "ent", "ize", "ized", "izing", "ise", "ised",
];

/// Shortest text2emotion entry that may act as a stem.
pub const MIN_STEM: usize = 4;
