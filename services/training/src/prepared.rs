//! What every trainer starts from: the corpus, its seeded split and its text
//! embeddings, the training split optionally grown by made contrast and negation
//! examples (`augment`); and tuning the text encoder on it.

use std::path::Path;

use super::{
    TextEncoder, TrainConfig, augment, dialogues, encoder_tuning, split_corpus, topic_bias,
};
use crate::embed::embed_texts;
use empathy_corpus::{Corpus, Split, corpus_path, load_corpus};
use empathy_model::lexicon::Lexicon;

/// Tunes the text encoder in `base_dir` on the training split (see `encoder_tuning`),
/// `base` giving the frozen embeddings it is distilled towards; publishes it under
/// `<assets>/text/tuned/<version>`.
pub fn tune_text_encoder(
    assets_dir: &Path,
    base_dir: &Path,
    config: &TrainConfig,
    tuning: &encoder_tuning::TuningConfig,
    base: TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<encoder_tuning::TunedEncoder> {
    let Prepared {
        corpus,
        split,
        text: frozen,
        ..
    } = prepare(assets_dir, config, base, progress)?;
    let bias = topic_bias(&corpus, &split, config.topic_prior_weight as f32)?;
    encoder_tuning::tune_on_corpus(
        encoder_tuning::Keep::Published { assets_dir },
        base_dir,
        &corpus,
        &frozen,
        &bias,
        &split.train,
        tuning,
        progress,
    )
}

/// The corpus, its split and its text embeddings, the training split grown by
/// `config.augment` made examples and `config.dialogues` made conversations (appended
/// after the `original` rows).
pub(crate) struct Prepared {
    pub corpus: Corpus,
    pub split: Split,
    pub text: Vec<f32>,
    pub original: usize,
    /// Per row, its previous turns (rows of `text`), oldest first; empty for all but
    /// the made conversations.
    pub context: Vec<Vec<(usize, empathy_model::Speaker)>>,
    /// Conversations made from the test split (in no split): a held-out check that the
    /// model learned to read the turns before.
    pub test_dialogues: Vec<usize>,
}

pub(crate) fn prepare(
    assets_dir: &Path,
    config: &TrainConfig,
    mut encoder: TextEncoder,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Prepared> {
    let mut corpus = load_corpus(&corpus_path(assets_dir))?;
    progress(&format!(
        "corpus: {} rows, {} kept ({} empty, {} duplicates and {} rows with conflicting \
         labels dropped)",
        corpus.rows,
        corpus.texts.len(),
        corpus.empty_removed,
        corpus.duplicates_removed,
        corpus.conflicting_removed
    ));
    let mut split = split_corpus(&corpus, config, progress);
    let sha = corpus.sha256.clone();
    let mut text = embed_texts(&corpus.texts, &sha, config, &mut encoder, progress)?;
    let original = corpus.texts.len();
    if config.augment > 0 {
        let made = augment::augment(
            &corpus.texts,
            &corpus.labels,
            &corpus.topics,
            &split.train,
            config.augment,
            config.seed,
        )?;
        progress(&format!(
            "augmented the training split with {} contrast and negation examples",
            made.texts.len()
        ));
        text.extend(embed_texts(
            &made.texts,
            &sha,
            config,
            &mut encoder,
            progress,
        )?);
        split.train.extend(original..original + made.texts.len());
        corpus.texts.extend(made.texts);
        corpus.labels.extend(made.labels);
        corpus.topics.extend(made.topics);
    }
    let mut context = vec![Vec::new(); corpus.texts.len()];
    let mut test_dialogues = Vec::new();
    if config.dialogues > 0 {
        let worded = dialogues::worded(&Lexicon::load(assets_dir)?, &corpus.texts[..original]);
        let mut rows = Rows {
            corpus: &mut corpus,
            text: &mut text,
            context: &mut context,
            original,
            worded,
        };
        let mut embed = |texts: &[String]| embed_texts(texts, &sha, config, &mut encoder, progress);
        let trained =
            rows.add_dialogues(&split.train, config.dialogues, config.seed, &mut embed)?;
        split.train.extend(trained);
        // Made the same way from the test split: how well the rules were learned.
        let (n, seed) = dialogues::test_draw(config.dialogues, config.seed);
        test_dialogues = rows
            .add_dialogues(&split.test, n, seed, &mut embed)?
            .collect();
        progress(&format!(
            "made {} conversations from the training split, {n} from the test split",
            config.dialogues
        ));
    }
    Ok(Prepared {
        corpus,
        split,
        text,
        original,
        context,
        test_dialogues,
    })
}

/// The rows of the corpus being prepared, for made conversations to be added to.
struct Rows<'a> {
    corpus: &'a mut Corpus,
    text: &'a mut Vec<f32>,
    context: &'a mut Vec<Vec<(usize, empathy_model::Speaker)>>,
    original: usize,
    /// Per original row, the sentiment its lexicon reads (VADER's thresholds).
    worded: Vec<usize>,
}

impl Rows<'_> {
    /// Appends `n` conversations made from the tweets among `rows` (never made
    /// examples), embedded with `embed`; returns their rows.
    fn add_dialogues(
        &mut self,
        rows: &[usize],
        n: usize,
        seed: u64,
        embed: &mut dyn FnMut(&[String]) -> anyhow::Result<Vec<f32>>,
    ) -> anyhow::Result<std::ops::Range<usize>> {
        let tweets: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| i < self.original)
            .collect();
        let corpus = &mut *self.corpus;
        let made = dialogues::compose(
            &corpus.texts,
            &corpus.labels,
            &corpus.topics,
            &self.worded,
            &tweets,
            n,
            seed,
        );
        self.text.extend(embed(&made.texts)?);
        let first = corpus.texts.len();
        corpus.texts.extend(made.texts);
        corpus.labels.extend(made.labels);
        corpus.topics.extend(made.topics);
        self.context.extend(made.context);
        Ok(first..corpus.texts.len())
    }
}
