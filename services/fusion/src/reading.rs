//! Text in a language that a plugin reads itself (modality "text-<lang>", e.g.
//! "text-zh"): the serving version's text and lexicon tokens were trained on English,
//! so such text goes to that plugin instead, and its reading stands in for them. Which
//! texts go there, what the model takes from the reading, and what the answer says.

use empathy_model::WordsReading;
use empathy_proto::modality;
use empathy_proto::v1::{Attribution, TextReading};

use crate::encoders::EncoderPool;

/// The modality that reads text in `language`, if an encoder serves one.
pub async fn reader_for(pool: &EncoderPool, language: &str) -> Option<String> {
    if language.is_empty() || language == "en" {
        return None;
    }
    let wanted = modality::text_in(language);
    pool.routes()
        .await
        .into_iter()
        .any(|(m, _)| m == wanted)
        .then_some(wanted)
}

/// The reading as the model takes it; None when the plugin sent a malformed one.
pub fn for_model(modality: &str, reading: &TextReading) -> Option<WordsReading> {
    Some(WordsReading {
        modality: modality.to_string(),
        sentiment: reading.sentiment.clone().try_into().ok()?,
        emotions: reading.emotions.clone().try_into().ok()?,
    })
}

/// The words the plugin named, as lexicon attributions.
pub fn word_attributions(reading: &TextReading) -> Vec<Attribution> {
    reading
        .words
        .iter()
        .map(|w| Attribution {
            kind: "lexicon".into(),
            name: w.word.clone(),
            weight: w.weight,
            signal: w.signal.clone(),
        })
        .collect()
}

fn has_han(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF))
}

/// What the answer says about how the words were read: by which plugin, or why by
/// the English path. (Situations speak for themselves: the situation service refuses
/// languages it does not write, and the answer lists why among what is missing.)
pub fn notes(language: &str, read_by: Option<&str>, text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    match read_by {
        Some(plugin) => notes.push(format!(
            "language {language}: the words were read by the {plugin} plugin (its lexicon \
             and sentiment model); the serving model version reads English words only"
        )),
        None if text.is_empty() => {}
        None if (language.is_empty() || language == "en") && has_han(text) => notes.push(format!(
            "language {}: the text mixes in Chinese, and the words were read by the English \
             text path; set options.language to \"zh\" to read them as Chinese",
            if language.is_empty() {
                "not sure"
            } else {
                language
            }
        )),
        None if !language.is_empty() && language != "en" => notes.push(format!(
            "language {language}: no loaded plugin reads it ({}), so the words were read by \
             the English text path",
            modality::text_in(language)
        )),
        None => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::WordSignal;

    use super::*;

    #[test]
    fn a_reading_becomes_model_input_and_attributions() {
        let reading = TextReading {
            sentiment: vec![0.7, 0.2, 0.1],
            emotions: vec![0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.4],
            words: vec![WordSignal {
                word: "差".into(),
                weight: -2.0,
                signal: "disgust".into(),
            }],
        };
        let input = for_model("text-zh", &reading);
        assert_eq!(input.map(|r| r.sentiment), Some([0.7, 0.2, 0.1]));
        let found = word_attributions(&reading);
        assert_eq!(
            (found[0].kind.as_str(), found[0].name.as_str()),
            ("lexicon", "差")
        );
        let short = TextReading {
            sentiment: vec![1.0],
            ..reading
        };
        assert_eq!(for_model("text-zh", &short), None);
    }

    #[test]
    fn the_answer_says_how_the_words_were_read() {
        let read = notes("zh", Some("text-zh"), "很好");
        assert!(read.len() == 1 && read[0].contains("text-zh"), "{read:?}");
        for language in ["", "en"] {
            let mixed = notes(language, None, "This is 很好");
            assert!(mixed[0].contains("options.language"), "{mixed:?}");
        }
        let unread = notes("es", None, "Muy bien");
        assert!(unread[0].contains("text-es"), "{unread:?}");
        assert!(notes("en", None, "Fine").is_empty());
    }
}
