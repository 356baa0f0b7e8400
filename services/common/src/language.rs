//! Which language an input's words are in, as a BCP-47 primary tag ("en", "zh"):
//! the caller's `options.language` wins, then what Whisper heard, then a detector on
//! the text, when it is sure. The detector is lingua, over the languages the workspace
//! enables: whatlang called English tweets French with full confidence (9 of 1527
//! sampled, and "Driver-less cars can't come quick enough!"), lingua none of our
//! written sentences and 20 of those tweets, nearly all mojibake or hashtags only.

use std::sync::OnceLock;

use lingua::{LanguageDetector, LanguageDetectorBuilder};

/// How far ahead the likeliest language must be before it is believed.
const MIN_RELATIVE_DISTANCE: f64 = 0.25;

fn detector() -> &'static LanguageDetector {
    static DETECTOR: OnceLock<LanguageDetector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        LanguageDetectorBuilder::from_all_languages()
            .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
            .build()
    })
}

/// Loads the detector and its models.
pub fn warm_up() {
    detect("The detector loads every language's models on first use.");
}

/// The language of `text`; None when it is too short or mixed for the detector to be
/// sure.
pub fn detect(text: &str) -> Option<String> {
    let language = detector().detect_language_of(text)?;
    Some(language.iso_code_639_1().to_string())
}

/// The language to report and route by: `hint` (options.language) if given, else
/// `heard` (speech), else the text's.
pub fn resolve(hint: &str, heard: Option<&str>, text: &str) -> String {
    let hint = hint.trim();
    if !hint.is_empty() {
        return hint.to_string();
    }
    heard
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| detect(text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_what_it_is_sure_of() {
        assert_eq!(
            detect("The delivery was late again and nobody called me back.").as_deref(),
            Some("en")
        );
        assert_eq!(
            detect("这家店的服务太差了，我再也不来了。").as_deref(),
            Some("zh")
        );
        assert_eq!(
            detect("El servicio fue muy lento y la comida llegó fría.").as_deref(),
            Some("es")
        );
        // Languages the meaning reader reads, once taken for German or Spanish.
        for (text, language) in [
            ("Tåget var försenat igen och ingen sa något.", "sv"),
            ("Paczka przyszła uszkodzona i nikt nie odpowiada.", "pl"),
            ("Kargo yine gecikti ve kimse bilgi vermedi.", "tr"),
        ] {
            assert_eq!(detect(text).as_deref(), Some(language), "{text}");
        }
        assert_eq!(detect("42 :)").as_deref(), None, "no words to tell by");
    }

    #[test]
    fn the_callers_hint_wins_then_speech_then_text() {
        let zh = "这家店的服务太差了，我再也不来了。";
        assert_eq!(resolve("en", Some("de"), zh), "en");
        assert_eq!(resolve("", Some("de"), zh), "de");
        assert_eq!(resolve("", None, zh), "zh");
        assert_eq!(resolve(" ", Some(""), "42 :)"), "");
    }
}
