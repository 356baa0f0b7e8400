use std::sync::OnceLock;

use super::*;
use crate::test_support::assets_dir;

fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| match Lexicon::load(&assets_dir()) {
        Ok(lexicon) => lexicon,
        Err(e) => panic!("{e:#}"),
    })
}

fn compound(text: &str) -> f32 {
    lexicon().analyze(text).vader_compound
}

fn top(emotions: &[f32; 7]) -> &'static str {
    let best = (0..7)
        .max_by(|a, b| emotions[*a].total_cmp(&emotions[*b]))
        .unwrap_or(6);
    empathy_proto::EMOTION_LABELS[best]
}

#[test]
fn matches_vader_published_scores() {
    // From VADER's README; the emoji line is what vaderSentiment 3.3.2 itself prints
    // (the README's 0.7003 predates its emoji lexicon). Our scores also matched
    // 3.3.2's on 5,452 corpus tweets to 0.001 when this was written.
    for (text, expected) in [
        ("VADER is smart, handsome, and funny.", 0.8316),
        ("VADER is smart, handsome, and funny!", 0.8439),
        ("VADER is very smart, handsome, and funny.", 0.8545),
        ("VADER is VERY SMART, handsome, and FUNNY.", 0.9227),
        ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
        ("VADER is not smart, handsome, nor funny.", -0.7424),
        ("The book was good.", 0.4404),
        ("At least it isn't a horrible book.", 0.431),
        ("The book was only kind of good.", 0.3832),
        (
            "The plot was good, but the characters are uncompelling and the dialog is not great.",
            -0.7042,
        ),
        ("Today SUX!", -0.5461),
        ("Today only kinda sux! But I'll get by, lol", 0.5249),
        ("Make sure you :) or :D today!", 0.8633),
        ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
        (
            "Roger Dodger is one of the least compelling variations on this theme.",
            -0.1695,
        ),
        ("Without a doubt, an excellent idea.", 0.7013),
        ("Not bad at all", 0.431),
        ("A really bad, horrible book.", -0.8211),
    ] {
        let got = compound(text);
        assert!(
            (got - expected).abs() < 0.01,
            "{text:?}: compound {got}, VADER says {expected}"
        );
    }
}

#[test]
fn negation_flips_polarity() {
    assert!(compound("The food is good") > 0.3);
    assert!(compound("The food is not good") < -0.3);
    assert!(compound("The food isn't very good") < 0.0);
}

#[test]
fn boosters_caps_and_exclamations_raise_intensity() {
    let good = compound("The movie was good.");
    assert!(compound("The movie was very good.") > good);
    assert!(compound("The movie was GOOD.") > good);
    assert!(compound("The movie was good!!!") > good);
    assert!(compound("The movie was bad!!!") < compound("The movie was bad."));
    assert!(compound("The movie was slightly good.") < good);
}

#[test]
fn but_shifts_weight_to_the_second_clause() {
    assert!(compound("The food was great, but the service was terrible.") < 0.0);
    assert!(compound("The service was terrible, but the food was great.") > 0.0);
}

#[test]
fn features_have_the_declared_length_and_range() {
    for text in [
        "",
        "I LOVE it!!! but not really?",
        "😁 ugh",
        "plain words only",
    ] {
        let a = lexicon().analyze(text);
        assert_eq!(a.features.len(), LEXICON_FEATURES, "{text:?}");
        assert!(
            a.features
                .iter()
                .all(|f| f.is_finite() && (-1.0..=1.0).contains(f)),
            "{text:?}: {:?}",
            a.features
        );
        assert!(a.emotions.iter().all(|e| (0.0..=1.0).contains(e)));
        assert!((-1.0..=1.0).contains(&a.arousal));
    }
}

#[test]
fn text2emotion_parses_and_maps_to_our_labels() {
    let e = &lexicon().emotions;
    assert!(e.len() > 8000, "only {} text2emotion words", e.len());
    let bit = |k: usize| 1u8 << k;
    assert_eq!(e.text2emotion("angri"), Some(bit(emotion::ANGER)));
    // Stems match longer words; "y" matches a stem's "i".
    assert_eq!(e.text2emotion("angrily"), Some(bit(emotion::ANGER)));
    assert_eq!(e.text2emotion("amazing"), Some(bit(emotion::SURPRISE)));
    assert_eq!(e.text2emotion("happy"), Some(bit(emotion::JOY)));
    assert_eq!(
        e.text2emotion("afraid").map(|s| s & bit(emotion::FEAR)),
        Some(bit(emotion::FEAR))
    );
    assert_eq!(e.text2emotion("sad"), Some(bit(emotion::SADNESS)));
    assert_eq!(e.text2emotion("qwertyuiop"), None);
}

#[test]
fn disgust_seeds_are_vader_negative() {
    let l = lexicon();
    for word in emotion_words::seeds(emotion::DISGUST) {
        if let Some(v) = l.vader.valence(word) {
            assert!(v < 0.0, "{word} has VADER valence {v}");
        }
    }
    let rated = emotion_words::seeds(emotion::DISGUST)
        .iter()
        .filter(|w| l.vader.valence(w).is_some())
        .count();
    assert!(rated >= 15, "only {rated} disgust seeds are VADER words");
}

#[test]
fn emotions_follow_the_words() {
    for (text, expected) in [
        ("I am so happy and excited, what a wonderful day!", "joy"),
        ("The meeting is at 3 pm in room 4.", "neutral"),
        ("I am furious, this makes me so angry.", "anger"),
        ("That smell is disgusting, gross and vile.", "disgust"),
        ("I'm scared and terrified of the dark.", "fear"),
        ("I feel so sad and lonely, I cried all night.", "sadness"),
        ("Wow, I am completely shocked, what a surprise!", "surprise"),
        ("I am not happy at all.", "sadness"),
    ] {
        let a = lexicon().analyze(text);
        assert_eq!(top(&a.emotions), expected, "{text:?}: {:?}", a.emotions);
    }
}

#[test]
fn words_explain_the_scores() {
    let a = lexicon().analyze("I absolutely love this, thank you so much!");
    assert!(a.vader_compound > 0.5);
    assert!(
        a.words
            .iter()
            .any(|w| w.word == "love" && w.signal == "positive")
    );
    assert!(
        a.words
            .iter()
            .any(|w| w.word == "love" && w.signal == "joy")
    );
    let calm = lexicon().analyze("The meeting is at 3 pm in room 4.");
    let angry = lexicon().analyze("I am FURIOUS, this is OUTRAGEOUS!!!");
    assert!(
        angry.arousal > calm.arousal + 0.3,
        "{} vs {}",
        angry.arousal,
        calm.arousal
    );
}

#[test]
fn missing_files_are_named() {
    let Err(e) = Lexicon::load(std::path::Path::new("/nonexistent-assets")) else {
        panic!("loaded a lexicon from nowhere");
    };
    let msg = format!("{e:#}");
    assert!(
        msg.contains("vader_lexicon.txt") && msg.contains("empathy assets fetch"),
        "{msg}"
    );
}

/// An expansion of made-up words (and one real one): a confident sadness word, a
/// confident neutral word, a sadness word below the threshold, and "happy", which
/// the seeds already rate.
fn expansion() -> Expansion {
    let tsv = "word\tcount\temotion\temotion_confidence\tpolarity\tpolarity_confidence\n\
               zorblaxing\t7\tsadness\t0.8000\tnegative\t0.9000\n\
               quuxmobile\t40\tneutral\t0.9500\tpositive\t0.2000\n\
               fnordish\t3\tsadness\t0.1000\tnegative\t0.5000\n\
               happy\t99\tfear\t0.9000\tnegative\t0.9000\n";
    match Expansion::parse(
        "v0042",
        tsv.as_bytes().to_vec(),
        expansion::DEFAULT_MIN_CONFIDENCE,
        expansion::DEFAULT_WEIGHT,
    ) {
        Ok(x) => x,
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
fn an_expanded_word_adds_evidence_and_shows_in_the_words() {
    let x = expansion();
    let text = "the zorblaxing again";
    let plain = lexicon().analyze(text);
    let expanded = lexicon().analyze_with(text, Some(&x));
    assert_eq!(plain, lexicon().analyze_with(text, None));
    assert!(plain.words.is_empty(), "{:?}", plain.words);
    let sadness = emotion::SADNESS;
    assert!(
        expanded.emotions[sadness] > plain.emotions[sadness] + 0.1,
        "{:?} vs {:?}",
        expanded.emotions,
        plain.emotions
    );
    assert!(expanded.emotions[emotion::NEUTRAL] < plain.emotions[emotion::NEUTRAL]);
    assert_ne!(expanded.features, plain.features);
    let hit = expanded
        .words
        .iter()
        .find(|w| w.word == "zorblaxing")
        .expect("the expanded word is in the attributions");
    assert_eq!(hit.signal, "sadness");
    // weight x confidence: below any seed word's 1 and a rated text2emotion word's 0.4.
    assert!(
        (hit.weight - expansion::DEFAULT_WEIGHT * 0.8).abs() < 1e-6,
        "{hit:?}"
    );
    // Weaker than a seed word of the same emotion.
    let seed = lexicon().analyze("the sad again");
    assert!(seed.emotions[sadness] > expanded.emotions[sadness]);
}

#[test]
fn neutral_low_confidence_and_already_rated_expanded_words_add_nothing() {
    let x = expansion();
    for text in [
        "my quuxmobile is here",
        "a fnordish day",
        "I am happy today",
        "nothing expanded here",
    ] {
        assert_eq!(
            lexicon().analyze(text),
            lexicon().analyze_with(text, Some(&x)),
            "{text}"
        );
    }
    assert_eq!(x.emotion("quuxmobile"), None);
    assert_eq!(x.emotion("fnordish"), None);
    assert_eq!(x.counting_words()[emotion::SADNESS], 1);
    assert_eq!(x.counting_words().iter().sum::<usize>(), 2);
}

#[test]
fn negation_applies_to_expanded_words() {
    let x = expansion();
    // "not <sadness word>" asserts nothing, as for any lexicon word.
    let a = lexicon().analyze_with("not zorblaxing", Some(&x));
    assert_eq!(a.emotions[emotion::SADNESS], 0.0);
}

#[test]
fn a_malformed_expansion_is_refused() {
    let header = "word\tcount\temotion\temotion_confidence\tpolarity\tpolarity_confidence\n";
    for body in [
        "zorb\t1\tsadness\n",
        "zorb\t1\tgloom\t0.5\tnegative\t0.5\n",
        "zorb\t1\tsadness\tNaN\tnegative\t0.5\n",
        "zorb\t1\tsadness\t0.5\tsideways\t0.5\n",
    ] {
        let tsv = format!("{header}{body}").into_bytes();
        assert!(Expansion::parse("v0001", tsv, 0.3, 0.25).is_err(), "{body}");
    }
    assert!(Expansion::parse("v0001", b"word\tcount\n".to_vec(), 0.3, 0.25).is_err());
    // The published format, with the "-" of an unreached word, parses.
    let ok = format!("{header}zorb\t1\t-\t0\t-\t0\n").into_bytes();
    let x = Expansion::parse("v0001", ok, 0.3, 0.25).expect("parses");
    assert_eq!(x.len(), 1);
    assert_eq!(x.emotion("zorb"), None);
}
