//! The few-shot prompt. The shots are ours, written for this prompt: each kind of
//! sentence the reader is for (plain, negated, contrasted, idiomatic, matter-of-fact)
//! appears, none is from an evaluation set, and the label words are the answers.

/// The answers the reader scores, in the order `MeaningReader::read` returns them.
pub const LABEL_WORDS: [&str; 3] = ["positive", "negative", "neutral"];

/// (text, feeling) shown before every text.
pub const SHOTS: [(&str, &str); 10] = [
    (
        "The package arrived two days early and everything works.",
        "positive",
    ),
    (
        "They lost my reservation and nobody even apologised.",
        "negative",
    ),
    ("The meeting is scheduled for Tuesday at ten.", "neutral"),
    ("The staff were not helpful in the slightest.", "negative"),
    ("I have no complaints about the new laptop.", "positive"),
    (
        "The view was lovely, but the bed was so hard I barely slept.",
        "negative",
    ),
    (
        "It took ages to arrive, but honestly it was worth every minute.",
        "positive",
    ),
    ("That concert was out of this world.", "positive"),
    ("Well, that was a complete waste of an evening.", "negative"),
    ("The bus leaves from platform four.", "neutral"),
];

const INSTRUCTION: &str = "Classify how the speaker feels.\n\n";

/// Closes every text: the next word is the answer.
pub const ASK: &str = "\nFeeling:";

/// The instruction and the shots, ending where a text's line begins.
pub fn shots() -> String {
    let mut prompt = INSTRUCTION.to_string();
    for (text, feeling) in SHOTS {
        prompt.push_str(&format!("{}{ASK} {feeling}\n\n", text_line(text)));
    }
    prompt
}

/// A text's line of the prompt; its own line breaks would read as the prompt's.
pub fn text_line(text: &str) -> String {
    format!(
        "Text: {}",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}
