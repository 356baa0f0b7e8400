//! `empathy situations evaluate`: do imagined situations change the answer where they
//! should? Sends every sentence to a running server twice over its public API, without
//! and with k situations (same seed), and prints sentiment macro-F1 and top-emotion
//! accuracy for both with 95% bootstrap intervals, the paired difference, and the
//! emotion each reading of the situations alone gives (the generator's, their words').
//!
//! Sentences come from a JSONL file (`{"text", "sentiment", "emotion"?}`, e.g.
//! eval/implicit-test.jsonl) or, with `--lexicon-silent N`, from the corpus's test
//! split: N tweets on which the server's lexicon finds no word (sentiment labels only).

use std::path::PathBuf;

use anyhow::{Context, bail};
use empathy_cli::Client;
use empathy_corpus::{corpus_path, load_corpus, stratified_split};
use empathy_model::{Lexicon, NEUTRAL};
use empathy_proto::{
    EMOTION_LABELS, SENTIMENT_LABELS,
    v1::{AnalyzeOptions, AnalyzeRequest, AnalyzeResponse},
};
use empathy_training::{
    TrainConfig,
    metrics::{Confusion, bootstrap_ci},
};
use futures::{StreamExt, TryStreamExt};
use rand::{SeedableRng, seq::SliceRandom};

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// JSONL of {"text", "sentiment", "emotion"?}.
    #[arg(long, required_unless_present = "lexicon_silent")]
    data: Option<PathBuf>,
    /// Instead of --data: this many test-split tweets on which the server's lexicon
    /// finds no sentiment or emotion word.
    #[arg(long, conflicts_with = "data")]
    lexicon_silent: Option<usize>,
    /// Situations per sentence.
    #[arg(long, default_value_t = 3)]
    k: u32,
    /// Seeds the situations (and the tweet sample).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Each request's deadline: generous by default, so that the table measures what
    /// situations say rather than how fast they come.
    #[arg(long, default_value_t = 60_000)]
    deadline_ms: u32,
    /// Print every sentence with both answers and the situations.
    #[arg(long)]
    show: bool,
    #[command(flatten)]
    fusion: empathy_cli::FusionEndpoint,
    #[arg(long, env = "EMPATHY_ASSETS", default_value = "assets")]
    assets: PathBuf,
}

struct Item {
    text: String,
    sentiment: usize,
    emotion: Option<usize>,
}

#[derive(serde::Deserialize)]
struct Line {
    text: String,
    sentiment: String,
    #[serde(default)]
    emotion: Option<String>,
}

/// Which label of an answer a row of the report counts.
type Pick = fn(&Answers) -> usize;

/// One sentence's two answers, as label indices.
struct Answers {
    without: (usize, usize),
    with: (usize, usize),
    /// The emotion of the situations alone, read by the generator and by their words
    /// (the answer without situations where none came or they carry none).
    generator: usize,
    words: usize,
    situations: usize,
    silent: bool,
}

pub async fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let client = args.fusion.connect().await?;
    let items = match (&args.data, args.lexicon_silent) {
        (Some(path), _) => read_items(path)?,
        (None, Some(n)) => lexicon_silent_tweets(&args, &client, n).await?,
        (None, None) => bail!("pass --data FILE or --lexicon-silent N"),
    };
    let lexicon = Lexicon::load(&args.assets)?;
    let answers: Vec<Answers> = futures::stream::iter(&items)
        .map(|item| answer(&args, client.clone(), &lexicon, item))
        .buffered(args.concurrency.max(1))
        .try_collect()
        .await?;
    report(&args, &items, &answers);
    Ok(())
}

fn label(labels: &[&str], name: &str) -> anyhow::Result<usize> {
    labels
        .iter()
        .position(|l| *l == name)
        .with_context(|| format!("{name:?} is not one of {labels:?}"))
}

fn read_items(path: &std::path::Path) -> anyhow::Result<Vec<Item>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line: Line = serde_json::from_str(l)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?;
            Ok(Item {
                sentiment: label(&SENTIMENT_LABELS, &line.sentiment)?,
                emotion: line
                    .emotion
                    .as_deref()
                    .map(|e| label(&EMOTION_LABELS, e))
                    .transpose()?,
                text: line.text,
            })
        })
        .collect()
}

fn request(text: &str, k: u32, args: &EvaluateArgs) -> AnalyzeRequest {
    AnalyzeRequest {
        text: text.to_string(),
        options: Some(AnalyzeOptions {
            num_situations: k,
            seed: args.seed,
            deadline_ms: args.deadline_ms,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn analyze(client: &mut Client, request: AnalyzeRequest) -> anyhow::Result<AnalyzeResponse> {
    Ok(client
        .analyze(request)
        .await
        .map_err(|s| anyhow::anyhow!("Analyze failed ({:?}): {}", s.code(), s.message()))?
        .into_inner())
}

fn labels_of(r: &AnalyzeResponse) -> anyhow::Result<(usize, usize)> {
    let s = r
        .sentiment
        .as_ref()
        .context("an answer without sentiment")?;
    let e = r.emotions.as_ref().context("an answer without emotions")?;
    Ok((
        label(&SENTIMENT_LABELS, &s.label)?,
        label(&EMOTION_LABELS, &e.top)?,
    ))
}

fn is_silent(r: &AnalyzeResponse) -> bool {
    !r.attributions.iter().any(|a| a.kind == "lexicon")
}

/// The test split's tweets, shuffled with the seed, that the server's lexicon is
/// silent on, until there are `n`.
async fn lexicon_silent_tweets(
    args: &EvaluateArgs,
    client: &Client,
    n: usize,
) -> anyhow::Result<Vec<Item>> {
    let corpus = load_corpus(&corpus_path(&args.assets))?;
    let config = TrainConfig::default();
    let mut test = stratified_split(&corpus.labels, config.seed, config.held_out_fraction).test;
    test.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
    let mut found = Vec::new();
    for chunk in test.chunks(64) {
        let answers: Vec<AnalyzeResponse> = futures::stream::iter(chunk)
            .map(|&i| {
                let mut client = client.clone();
                let request = request(&corpus.texts[i], 0, args);
                async move { analyze(&mut client, request).await }
            })
            .buffered(8)
            .try_collect()
            .await?;
        for (&i, r) in chunk.iter().zip(&answers) {
            if is_silent(r) && found.len() < n {
                found.push(Item {
                    text: corpus.texts[i].clone(),
                    sentiment: corpus.labels[i],
                    emotion: None,
                });
            }
        }
        if found.len() >= n {
            return Ok(found);
        }
    }
    bail!(
        "the test split has only {} tweets the lexicon is silent on",
        found.len()
    )
}

async fn answer(
    args: &EvaluateArgs,
    mut client: Client,
    lexicon: &Lexicon,
    item: &Item,
) -> anyhow::Result<Answers> {
    let without = analyze(&mut client, request(&item.text, 0, args)).await?;
    let with = analyze(&mut client, request(&item.text, args.k, args)).await?;
    let (without_labels, with_labels) = (labels_of(&without)?, labels_of(&with)?);
    let fallback = without_labels.1;
    let mut generator = [0.0f32; 7];
    let mut words = [0.0f32; 7];
    for s in &with.situations {
        for e in &s.emotions {
            generator[label(&EMOTION_LABELS, &e.label)?] += s.critic_score * e.score;
        }
        let lex = lexicon.analyze_with(&s.text, None).emotions;
        for (w, e) in words.iter_mut().zip(lex) {
            *w += s.critic_score * e * (1.0 - lex[NEUTRAL]);
        }
    }
    let top = |x: &[f32; 7]| {
        let (i, v) = x
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((NEUTRAL, &0.0));
        if *v > 0.0 { i } else { fallback }
    };
    if args.show {
        println!(
            "{:9} {:9} | without {:8} {:9} | with {:8} {:9} | {}",
            SENTIMENT_LABELS[item.sentiment],
            item.emotion.map_or("-", |e| EMOTION_LABELS[e]),
            SENTIMENT_LABELS[without_labels.0],
            EMOTION_LABELS[without_labels.1],
            SENTIMENT_LABELS[with_labels.0],
            EMOTION_LABELS[with_labels.1],
            item.text
        );
        for s in &with.situations {
            println!("      {:.2} {:9} {}", s.critic_score, s.emotion, s.text);
        }
    }
    Ok(Answers {
        without: without_labels,
        with: with_labels,
        generator: top(&generator),
        words: top(&words),
        situations: with.situations.len(),
        silent: is_silent(&without),
    })
}

fn report(args: &EvaluateArgs, items: &[Item], answers: &[Answers]) {
    let n = items.len();
    let source = args.data.as_ref().map_or_else(
        || "lexicon-silent test-split tweets".to_string(),
        |p| p.display().to_string(),
    );
    println!(
        "{n} sentences from {source}; {} lexicon-silent; k = {} situations, seed {}; \
         {:.2} situations per answer on average",
        answers.iter().filter(|a| a.silent).count(),
        args.k,
        args.seed,
        answers.iter().map(|a| a.situations).sum::<usize>() as f64 / n.max(1) as f64
    );
    let f1 = |ix: &[usize], pick: Pick| {
        let mut c = Confusion::new(SENTIMENT_LABELS.len());
        for &i in ix {
            c.add(items[i].sentiment, pick(&answers[i]));
        }
        c.macro_f1()
    };
    let without_s: Pick = |a| a.without.0;
    let with_s: Pick = |a| a.with.0;
    let all: Vec<usize> = (0..n).collect();
    println!("sentiment macro-F1 (95% bootstrap CI):");
    for (name, pick) in [
        ("without situations", without_s),
        ("with situations", with_s),
    ] {
        let (lo, hi) = bootstrap_ci(n, args.seed, |ix| f1(ix, pick));
        println!("  {name:44} {:.3} ({lo:.3}-{hi:.3})", f1(&all, pick));
    }
    let (lo, hi) = bootstrap_ci(n, args.seed, |ix| f1(ix, with_s) - f1(ix, without_s));
    println!(
        "  {:44} {:+.3} ({lo:+.3}-{hi:+.3})",
        "difference, paired",
        f1(&all, with_s) - f1(&all, without_s)
    );

    let labelled: Vec<usize> = (0..n).filter(|&i| items[i].emotion.is_some()).collect();
    if labelled.is_empty() {
        println!("top-emotion accuracy: the sentences carry no emotion labels");
        return;
    }
    let accuracy = |ix: &[usize], pick: Pick| {
        let right = ix
            .iter()
            .filter(|&&j| items[labelled[j]].emotion == Some(pick(&answers[labelled[j]])))
            .count();
        right as f64 / ix.len().max(1) as f64
    };
    let rows: [(&str, Pick); 4] = [
        ("without situations", |a| a.without.1),
        ("with situations (the answer)", |a| a.with.1),
        ("situations alone, the generator's reading", |a| a.generator),
        ("situations alone, their words", |a| a.words),
    ];
    let m = labelled.len();
    let every: Vec<usize> = (0..m).collect();
    println!("top-emotion accuracy on {m} labelled sentences (95% bootstrap CI):");
    for (name, pick) in rows {
        let (lo, hi) = bootstrap_ci(m, args.seed, |ix| accuracy(ix, pick));
        println!(
            "  {name:44} {:.3} ({lo:.3}-{hi:.3})",
            accuracy(&every, pick)
        );
    }
    let (without_e, with_e) = (rows[0].1, rows[1].1);
    let (lo, hi) = bootstrap_ci(m, args.seed, |ix| {
        accuracy(ix, with_e) - accuracy(ix, without_e)
    });
    println!(
        "  {:44} {:+.3} ({lo:+.3}-{hi:+.3})",
        "difference, paired",
        accuracy(&every, with_e) - accuracy(&every, without_e)
    );
}
