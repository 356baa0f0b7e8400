//! What a trained network scores on held-out data: the test split (beside VADER and
//! the lexicon alone) and the conversations made from it.

use std::collections::BTreeMap;

use empathy_corpus::Split;
use empathy_model::network::FusionNetwork;

use crate::dialogues;
use crate::fit::{self, Features, Fit, Shown, predict};
use crate::metrics::{Confusion, vader_label};

/// The confusion of `network`'s predictions on the examples at `indices` against
/// `truth` (their labels, in order), showing it the `shown` tokens.
pub(crate) fn confusion_on(
    network: &FusionNetwork,
    features: &Features,
    indices: &[usize],
    truth: &[usize],
    shown: Shown,
) -> anyhow::Result<Confusion> {
    let predicted = predict(network, features, indices, shown)?;
    Ok(Confusion::from_labels(3, truth, &predicted))
}

/// The test-split metrics of the model, of the model from the lexicon alone and of
/// VADER, plus the validation macro-F1 and the split sizes; and the model's confusion.
pub(crate) fn test_metrics(
    network: &FusionNetwork,
    features: &Features,
    labels: &[usize],
    split: &Split,
    fit: &Fit,
) -> anyhow::Result<(BTreeMap<String, f64>, Confusion)> {
    let mut metrics = BTreeMap::new();
    let test_labels: Vec<usize> = split.test.iter().map(|&i| labels[i]).collect();
    let on_test = |text: bool| {
        let shown = Shown {
            text,
            situations: false,
        };
        confusion_on(network, features, &split.test, &test_labels, shown)
    };
    let model = on_test(true)?;
    let lexicon_only = on_test(false)?;
    let vader_pred: Vec<usize> = split
        .test
        .iter()
        .map(|&i| vader_label(features.vader[i]))
        .collect();
    let baseline = Confusion::from_labels(3, &test_labels, &vader_pred);
    record(&mut metrics, "test", &model);
    record(&mut metrics, "vader_test", &baseline);
    record(&mut metrics, "lexicon_only_test", &lexicon_only);
    metrics.insert("validation_macro_f1".into(), fit.best_f1);
    metrics.insert("train_size".into(), split.train.len() as f64);
    metrics.insert("validation_size".into(), split.validation.len() as f64);
    metrics.insert("test_size".into(), split.test.len() as f64);
    Ok((metrics, model))
}

pub(crate) fn record(metrics: &mut BTreeMap<String, f64>, prefix: &str, m: &Confusion) {
    metrics.insert(format!("{prefix}_accuracy"), m.accuracy());
    metrics.insert(format!("{prefix}_macro_f1"), m.macro_f1());
    for (c, label) in empathy_proto::SENTIMENT_LABELS.iter().enumerate() {
        metrics.insert(format!("{prefix}_f1_{label}"), m.class(c).f1);
    }
}

/// The model on the conversations made from the test split, reading the turns before
/// and from the last turn alone, overall and where the last turn says the opposite of
/// the scene outright: a line of progress and the metrics.
pub(crate) fn dialogue_scores(
    network: &FusionNetwork,
    features: &Features,
    labels: &[usize],
    test_dialogues: &[usize],
) -> anyhow::Result<(String, BTreeMap<String, f64>)> {
    let accuracy = |rows: &[usize], read_context: bool| -> anyhow::Result<f64> {
        let truth: Vec<usize> = rows.iter().map(|&i| labels[i]).collect();
        let predicted = fit::predict_with_context(network, features, rows, read_context)?;
        Ok(Confusion::from_labels(3, &truth, &predicted).accuracy())
    };
    let (with, without) = (
        accuracy(test_dialogues, true)?,
        accuracy(test_dialogues, false)?,
    );
    // A turn that says its feeling outright after a scene of the opposite one: the
    // turns before must not overrule it.
    let outright = dialogues::outright(test_dialogues, &features.context, labels);
    let (outright_with, outright_without) =
        (accuracy(&outright, true)?, accuracy(&outright, false)?);
    let line = format!(
        "conversations made from the test split ({}): accuracy {with:.4} reading the \
         turns before, {without:.4} from the last turn alone; of them, turns saying the \
         opposite of the scene outright ({}): {outright_with:.4} and {outright_without:.4}",
        test_dialogues.len(),
        outright.len()
    );
    let metrics = BTreeMap::from([
        ("test_dialogues_accuracy".to_string(), with),
        (
            "test_dialogues_accuracy_last_turn_only".to_string(),
            without,
        ),
        (
            "test_dialogues_outright_accuracy".to_string(),
            outright_with,
        ),
        (
            "test_dialogues_outright_accuracy_last_turn_only".to_string(),
            outright_without,
        ),
    ]);
    Ok((line, metrics))
}
