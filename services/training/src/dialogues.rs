//! Conversations made from the training split, so that the model learns to read the
//! turns before the one it analyses. Each one sets a scene (one to three training
//! tweets, each said by the person or by the other side) whose feeling is that of its
//! latest turn: in three scenes of five all turns share it, in the others the earlier
//! turns have another feeling (a problem, then its fix; good news, then a catch). It
//! ends with a last turn labelled by these rules:
//!
//! - a tweet that says its feeling outright (negative or positive, and the lexicon
//!   reads it so) keeps its own label, whatever the scene (what a person says outright
//!   wins over what came before);
//! - a matter-of-fact tweet (neutral, no sentiment word) takes the scene's label (it
//!   carries the feeling of the conversation it is in: "so I call back on Monday" after
//!   a refusal);
//! - a short reaction from `REACTIONS` takes the scene's label ("Great." after good
//!   news is glad, after bad news sarcastic).
//!
//! Last turns whose label and words disagree (a positive tweet the lexicon reads as
//! neutral) are left out: which of the two rules they follow is unknown. Only training
//! tweets are used; the labels follow from the construction alone.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use empathy_model::Speaker;
use empathy_model::lexicon::Lexicon;

use crate::metrics::vader_label;

const NEGATIVE: usize = 0;
const NEUTRAL: usize = 1;
const POSITIVE: usize = 2;

/// Short reactions whose feeling only the conversation gives. Written for training,
/// before and apart from the held-out dialogues in `eval/`; the nine that turned out to
/// be last turns there too were then taken out, so that no held-out turn is trained on.
pub const REACTIONS: [&str; 39] = [
    "Okay.",
    "OK then.",
    "Fine.",
    "Sure.",
    "Alright.",
    "Great.",
    "Perfect.",
    "Wonderful.",
    "Brilliant.",
    "Amazing.",
    "Nice.",
    "Thanks.",
    "Thank you.",
    "Wow.",
    "Oh.",
    "Oh wow.",
    "Really?",
    "Seriously?",
    "Is that so.",
    "Got it.",
    "Understood.",
    "Makes sense.",
    "Of course.",
    "Sure thing.",
    "If you say so.",
    "Well then.",
    "Well, okay.",
    "Hmm.",
    "Huh.",
    "So that's that.",
    "Right then.",
    "Fair enough.",
    "Just like that.",
    "Yeah.",
    "Yep.",
    "Exactly what I needed.",
    "What a day.",
    "Classic.",
    "How nice.",
];

/// Per text, the sentiment its lexicon reads (VADER's thresholds): `compose`'s `worded`.
pub fn worded(lexicon: &Lexicon, texts: &[String]) -> Vec<usize> {
    texts
        .iter()
        .map(|t| vader_label(lexicon.analyze_with(t, None).vader_compound))
        .collect()
}

/// How many conversations are made from the test split, and from which seed, when
/// `trained` are made from the training split with `seed`: the held-out check.
pub fn test_draw(trained: usize, seed: u64) -> (usize, u64) {
    ((trained / 5).max(1), seed + 1)
}

/// Made conversations: the last turns (new rows), and per row its previous turns as
/// indices of training tweets, oldest first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dialogues {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    /// The scene's topic (for the topic priors).
    pub topics: Vec<usize>,
    pub context: Vec<Vec<(usize, Speaker)>>,
}

/// `n` conversations from the `train` rows of the corpus (`texts`, `labels`, `topics`,
/// and `worded`, the label its lexicon reads off each row), drawn from `seed`.
pub fn compose(
    texts: &[String],
    labels: &[usize],
    topics: &[usize],
    worded: &[usize],
    train: &[usize],
    n: usize,
    seed: u64,
) -> Dialogues {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xd1a1_09e5);
    let by_label: [Vec<usize>; 3] =
        std::array::from_fn(|l| train.iter().copied().filter(|&i| labels[i] == l).collect());
    // Last turns: tweets whose words say what their label says.
    let outright: [Vec<usize>; 3] = std::array::from_fn(|l| {
        by_label[l]
            .iter()
            .copied()
            .filter(|&i| worded[i] == l)
            .collect()
    });
    let mut made = Dialogues::default();
    if by_label.iter().chain(&outright).any(Vec::is_empty) {
        return made;
    }
    for _ in 0..n {
        let scene = match rng.random_range(0..20) {
            0..9 => NEGATIVE,
            9..18 => POSITIVE,
            _ => NEUTRAL,
        };
        let turns = rng.random_range(1..=3);
        let earlier = if rng.random_bool(0.6) {
            scene
        } else {
            (scene + rng.random_range(1..3)) % 3
        };
        let context: Vec<(usize, Speaker)> = (0..turns)
            .map(|k| {
                let label = if k + 1 == turns { scene } else { earlier };
                let i = by_label[label][rng.random_range(0..by_label[label].len())];
                let speaker = if rng.random_bool(0.5) {
                    Speaker::User
                } else {
                    Speaker::Other
                };
                (i, speaker)
            })
            .collect();
        let (text, label) = match rng.random_range(0..20) {
            0..8 => {
                let own = if rng.random_bool(0.5) {
                    NEGATIVE
                } else {
                    POSITIVE
                };
                let i = outright[own][rng.random_range(0..outright[own].len())];
                (texts[i].clone(), own)
            }
            8..13 => {
                let i = outright[NEUTRAL][rng.random_range(0..outright[NEUTRAL].len())];
                (texts[i].clone(), scene)
            }
            _ => (
                REACTIONS[rng.random_range(0..REACTIONS.len())].to_string(),
                scene,
            ),
        };
        made.topics.push(topics[context[turns - 1].0]);
        made.texts.push(text);
        made.labels.push(label);
        made.context.push(context);
    }
    made
}

/// The `rows` whose last turn is positive or negative and whose scene (`context`, the
/// latest turn before) has the opposite feeling: by the rules, tweets that keep their
/// own label against the conversation.
pub fn outright(rows: &[usize], context: &[Vec<(usize, Speaker)>], labels: &[usize]) -> Vec<usize> {
    rows.iter()
        .copied()
        .filter(|&i| {
            let scene = context[i].last().map(|&(j, _)| labels[j]);
            matches!(
                (labels[i], scene),
                (NEGATIVE, Some(POSITIVE)) | (POSITIVE, Some(NEGATIVE))
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts, labels, topics, and the lexicon's reading: wrong on every seventh row.
    fn corpus() -> (Vec<String>, Vec<usize>, Vec<usize>, Vec<usize>) {
        let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let worded = (0..60)
            .map(|i| if i % 7 == 0 { (i + 1) % 3 } else { i % 3 })
            .collect();
        let texts = labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("tweet {i} of {l}"));
        (texts.collect(), labels, vec![0; 60], worded)
    }

    #[test]
    fn labels_follow_the_rules_and_only_training_rows_are_used() {
        let (texts, labels, topics, worded) = corpus();
        let train: Vec<usize> = (0..45).collect();
        let made = compose(&texts, &labels, &topics, &worded, &train, 500, 7);
        assert_eq!(made.texts.len(), 500);
        let mut reactions = 0;
        for ((text, &label), context) in made.texts.iter().zip(&made.labels).zip(&made.context) {
            assert!((1..=3).contains(&context.len()));
            assert!(
                context.iter().all(|&(i, _)| i < 45),
                "a held-out row in context"
            );
            let scene = labels[context[context.len() - 1].0];
            let earlier = &context[..context.len() - 1];
            assert!(
                earlier.windows(2).all(|w| labels[w[0].0] == labels[w[1].0]),
                "earlier turns of mixed feelings"
            );
            match texts.iter().position(|t| t == text) {
                Some(i) if labels[i] != NEUTRAL => {
                    assert_eq!(label, labels[i]);
                    assert_eq!(worded[i], labels[i], "a last turn its words contradict");
                }
                Some(i) => assert!(i < 45 && label == scene && worded[i] == NEUTRAL),
                None => {
                    assert!(REACTIONS.contains(&text.as_str()) && label == scene);
                    reactions += 1;
                }
            }
        }
        assert!(reactions > 100, "{reactions} reactions of 500");

        // As rows after the corpus: the outright ones are tweets against their scene.
        let all: Vec<usize> = labels.iter().chain(&made.labels).copied().collect();
        let mut context = vec![Vec::new(); 60];
        context.extend(made.context.clone());
        let rows: Vec<usize> = (60..560).collect();
        let picked = outright(&rows, &context, &all);
        assert!(picked.len() > 40, "{} outright of 500", picked.len());
        for i in rows {
            let scene = all[context[i].last().map_or(0, |c| c.0)];
            let opposite = all[i] != NEUTRAL && scene != NEUTRAL && all[i] != scene;
            assert_eq!(picked.contains(&i), opposite);
            if opposite {
                assert!(!REACTIONS.contains(&made.texts[i - 60].as_str()));
            }
        }
        assert_eq!(
            made,
            compose(&texts, &labels, &topics, &worded, &train, 500, 7)
        );
    }
}
