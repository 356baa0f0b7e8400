//! The prompt, and what counts as a usable situation: one sentence, not empty, not a
//! loop of repeated words, not the utterance copied back.

/// The system turn: what a situation is.
pub const SYSTEM_PROMPT: &str = "You imagine the situation behind what people say. \
Answer with exactly one short sentence in the third person that says who the speaker is, \
what just happened to them, and why they feel the way they do. \
Do not repeat their words and do not give advice.";

/// Worked examples shown to the model as earlier turns (few-shot): a 135M model
/// copies the shape of an answer far better than it follows an instruction.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "I can't stop smiling today.",
        "A student just learned that she passed the exam she had studied for all year, so she feels proud and happy.",
    ),
    (
        "Just leave me alone.",
        "A teenager was scolded by his father in front of his friends, so he feels embarrassed and angry.",
    ),
];

/// Earlier turns shown to the model: the most recent ones (a 135M model loses the
/// thread in a long prompt, and the prompt stays short).
pub const CONTEXT_TURNS_USED: usize = 4;

/// The user turn for an utterance and the turns before it (oldest first; only the
/// last `CONTEXT_TURNS_USED` non-empty ones are used).
pub fn user_prompt(utterance: &str, context: &[String]) -> String {
    let mut prompt = String::new();
    let recent: Vec<&String> = context.iter().filter(|t| !t.trim().is_empty()).collect();
    let recent = &recent[recent.len().saturating_sub(CONTEXT_TURNS_USED)..];
    if !recent.is_empty() {
        prompt.push_str("Earlier in the conversation:\n");
        for turn in recent {
            prompt.push_str("- ");
            prompt.push_str(turn.trim());
            prompt.push('\n');
        }
    }
    prompt.push_str(&format!(
        "Someone says: \"{}\"\nIn one sentence, describe the situation in which they would say this.",
        utterance.trim()
    ));
    prompt
}

/// The whole conversation given to the model: system turn, the worked examples,
/// then the utterance.
pub fn prompt_turns(utterance: &str, context: &[String]) -> Vec<(&'static str, String)> {
    let mut turns = vec![("system", SYSTEM_PROMPT.to_string())];
    for (said, situation) in EXAMPLES {
        turns.push(("user", user_prompt(said, &[])));
        turns.push(("assistant", situation.to_string()));
    }
    turns.push(("user", user_prompt(utterance, context)));
    turns
}

/// The ids every prompt starts with (system turn and worked examples): the engine
/// prefills them once and forks each request from there.
pub fn shared_prefix_ids(tok: &empathy_bpe::GgufTokenizer) -> anyhow::Result<Vec<u32>> {
    let turns = prompt_turns("", &[]);
    let refs: Vec<(&str, &str)> = turns[..turns.len() - 1]
        .iter()
        .map(|(r, c)| (*r, c.as_str()))
        .collect();
    tok.chat_turns(&refs)
}

/// The prompt's token ids.
pub fn prompt_ids(
    tok: &empathy_bpe::GgufTokenizer,
    utterance: &str,
    context: &[String],
) -> anyhow::Result<Vec<u32>> {
    let turns = prompt_turns(utterance, context);
    let refs: Vec<(&str, &str)> = turns.iter().map(|(r, c)| (*r, c.as_str())).collect();
    tok.chat(&refs)
}

/// Why a generation was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Empty,
    TooShort,
    Repetitive,
    CopiesUtterance,
    Unfinished,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::TooShort => "too_short",
            Rejection::Repetitive => "repetitive",
            Rejection::CopiesUtterance => "copies_utterance",
            Rejection::Unfinished => "unfinished",
        }
    }
}

/// Turns raw model output into one sentence, or says why it is unusable.
/// `finished` is false when the token limit cut the text off.
pub fn clean(raw: &str, utterance: &str, finished: bool) -> Result<String, Rejection> {
    let line = raw
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    // Labels small models like to prepend.
    let mut text = line;
    for label in ["Situation:", "situation:", "Answer:", "Scenario:"] {
        if let Some(rest) = text.strip_prefix(label) {
            text = rest.trim_start();
        }
    }
    let text = text.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    let sentence = match first_sentence_end(text) {
        Some(end) => &text[..end],
        None if finished => text,
        None => return Err(Rejection::Unfinished),
    };
    let sentence = sentence.trim();
    if sentence.is_empty() {
        return Err(Rejection::Empty);
    }
    let words = words(sentence);
    if words.len() < 4 {
        return Err(Rejection::TooShort);
    }
    if is_repetitive(&words) {
        return Err(Rejection::Repetitive);
    }
    if copies(&words, &self::words(utterance)) {
        return Err(Rejection::CopiesUtterance);
    }
    let mut out = sentence.to_string();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    Ok(out)
}

/// Byte index just past the first sentence terminator that ends a sentence (followed
/// by whitespace or the end; "3.5" and "e.g." inside words do not count).
fn first_sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?') {
            let next = bytes.get(i + 1).copied();
            if next.is_none_or(|b| b.is_ascii_whitespace() || b == b'"') {
                // Abbreviations of one or two letters ("Mr.", "Dr.", "U.S.") are not ends.
                let word: String = text[..i]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphabetic() || *c == '.')
                    .collect();
                if c == '.' && (1..=2).contains(&word.len()) && word.chars().any(char::is_uppercase)
                {
                    continue;
                }
                return Some(i + 1);
            }
        }
    }
    None
}

/// Lower-case words, punctuation stripped.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A word three times in a row, or fewer than half the words distinct.
pub fn is_repetitive(words: &[String]) -> bool {
    if words.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        return true;
    }
    let distinct: std::collections::HashSet<&String> = words.iter().collect();
    words.len() >= 6 && distinct.len() * 2 < words.len()
}

/// The situation is mostly the utterance: it contains the utterance's words in order
/// (for utterances of 3+ words), or 80% of its words come from the utterance.
pub fn copies(situation: &[String], utterance: &[String]) -> bool {
    if utterance.is_empty() {
        return false;
    }
    if utterance.len() >= 3 && situation.windows(utterance.len()).any(|w| w == utterance) {
        return true;
    }
    let from_utterance = situation.iter().filter(|w| utterance.contains(w)).count();
    from_utterance * 5 >= situation.len() * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_sentence() {
        let s = clean(
            "A woman whose old dog died last night feels lost. She cries.",
            "My dog died",
            true,
        );
        assert_eq!(
            s.unwrap(),
            "A woman whose old dog died last night feels lost."
        );
        let s = clean(
            "Situation: \"Mr. Smith lost his job at 3.5 p.m. today\"\nmore",
            "x",
            true,
        );
        assert_eq!(s.unwrap(), "Mr. Smith lost his job at 3.5 p.m.");
        assert_eq!(
            clean("A man is sad because it rains", "x", true).unwrap(),
            "A man is sad because it rains."
        );
    }

    #[test]
    fn rejects_degenerate_output() {
        assert_eq!(clean("", "x", true), Err(Rejection::Empty));
        assert_eq!(clean("\n\n", "x", true), Err(Rejection::Empty));
        assert_eq!(clean("Sad.", "x", true), Err(Rejection::TooShort));
        assert_eq!(
            clean("the the the the the dog.", "x", true),
            Err(Rejection::Repetitive)
        );
        assert_eq!(
            clean(
                "He says my dog died yesterday.",
                "My dog died yesterday",
                true
            ),
            Err(Rejection::CopiesUtterance)
        );
        assert_eq!(
            clean("A man who lost his", "x", false),
            Err(Rejection::Unfinished)
        );
    }

    #[test]
    fn prompt_names_the_utterance_and_context() {
        let p = user_prompt(" hi ", &["how are you".into()]);
        assert!(p.contains("\"hi\""));
        assert!(p.contains("- how are you"));
        let turns: Vec<String> = (0..10).map(|i| format!("turn {i}")).collect();
        let p = user_prompt("hi", &turns);
        assert!(!p.contains("turn 5") && p.contains("turn 6") && p.contains("turn 9"));
    }
}
