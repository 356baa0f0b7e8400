//! The few-shot prompts, one per question. The shots are ours, written for these
//! prompts, none from an evaluation set, and the answer words are the labels. The
//! feeling shots show each kind of sentence the reader is for (plain, negated,
//! contrasted, idiomatic, matter-of-fact); the emotion shots show each emotion twice,
//! mostly by what happened rather than by naming it.

/// The answers the reader scores, in the order `MeaningReader::read` returns them.
pub const LABEL_WORDS: [&str; 3] = ["positive", "negative", "neutral"];

/// The emotions the reader scores, in the order `MeaningReader::read_emotions`
/// returns them.
pub const EMOTION_WORDS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral",
];

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

/// (text, emotion) shown before every text, one of each emotion and then another.
pub const EMOTION_SHOTS: [(&str, &str); 14] = [
    (
        "The airline lost my bag and then hung up on me twice.",
        "anger",
    ),
    (
        "There was a cockroach crawling across the hotel pillow.",
        "disgust",
    ),
    (
        "The doctor wants to see me urgently about my test results.",
        "fear",
    ),
    ("She said yes! We're getting married!", "joy"),
    ("The house feels so empty since she passed away.", "sadness"),
    ("I had no idea the old cinema was still open.", "surprise"),
    ("The library opens at nine on weekdays.", "neutral"),
    (
        "They promised a refund in March and it's now September.",
        "anger",
    ),
    (
        "The toilets at the festival hadn't been emptied in days.",
        "disgust",
    ),
    ("The ice on the lake cracked under my feet.", "fear"),
    ("My son called just to say he loves me.", "joy"),
    ("I didn't get the job, again.", "sadness"),
    (
        "Hang on, they've already finished building the bridge?",
        "surprise",
    ),
    ("Please attach the invoice to your email.", "neutral"),
];

/// Texts without content: what the model answers to them is its bias towards each
/// answer, which a reading is divided by ("calibrate before use", Zhao et al. 2021).
pub const CONTENT_FREE: [&str; 3] = ["N/A", "", "[MASK]"];

/// A question: its instruction, shots and the words that close every text (the
/// next word is the answer).
pub struct Question {
    pub instruction: &'static str,
    pub shots: &'static [(&'static str, &'static str)],
    pub ask: &'static str,
}

pub const FEELING: Question = Question {
    instruction: "Classify how the speaker feels.\n\n",
    shots: &SHOTS,
    ask: "\nFeeling:",
};

pub const EMOTION: Question = Question {
    instruction: "Classify the emotion the speaker feels.\n\n",
    shots: &EMOTION_SHOTS,
    ask: "\nEmotion:",
};

impl Question {
    /// The instruction and the shots, ending where a text's line begins.
    pub fn prefix(&self) -> String {
        let mut prompt = self.instruction.to_string();
        for (text, answer) in self.shots {
            prompt.push_str(&format!("{}{} {answer}\n\n", text_line(text), self.ask));
        }
        prompt
    }
}

/// A text's line of the prompt; its own line breaks would read as the prompt's.
pub fn text_line(text: &str) -> String {
    format!(
        "Text: {}",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}
