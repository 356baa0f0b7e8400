use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::LEXICON_FEATURES;
use crate::checkpoint::{
    Calibration, MANIFEST_FILE, NewVersion, TrainingInfo, latest_version, save_version,
};
use crate::network::{Dims, init_network};
use crate::test_support::{TempDir, analysis};

fn dims() -> Dims {
    Dims {
        text: 8,
        lexicon: LEXICON_FEATURES,
        speech: 3,
        image: 2,
        situation: 8,
        max_situations: 2,
        max_context: 2,
        d_model: 16,
    }
}

fn all_tokens() -> Vec<String> {
    ["text", "lexicon", "speech", "image", "situation", "context"]
        .map(String::from)
        .to_vec()
}

fn save(dir: &Path, seed: u64, tokens: Vec<String>) -> anyhow::Result<(PathBuf, FusionModel)> {
    save_calibrated(dir, seed, tokens, None)
}

fn save_calibrated(
    dir: &Path,
    seed: u64,
    tokens: Vec<String>,
    calibration: Option<Calibration>,
) -> anyhow::Result<(PathBuf, FusionModel)> {
    let (varmap, network) = init_network(dims(), &mut StdRng::seed_from_u64(seed))?;
    let (path, manifest) = save_version(
        dir,
        &varmap,
        NewVersion {
            tenant: None,
            typicality: None,
            corrections_hold_with_reader: false,
            corrections_read_by: None,
            reader_shift_scale: None,
            parent: None,
            dims: dims(),
            trained_tokens: tokens,
            emotion_source: "lexicon".into(),
            training: TrainingInfo::default(),
            metrics: [("test_macro_f1".to_string(), 0.5)].into(),
            calibration,
        },
    )?;
    Ok((path, FusionModel::new(manifest, network)))
}

fn inputs() -> Vec<ModelInputs> {
    let v = |n: usize, x: f32| (0..n).map(|i| x + i as f32 * 0.1).collect::<Vec<f32>>();
    vec![
        ModelInputs {
            text: Some(v(8, 0.1)),
            lexicon: analysis(0.2),
            speech: Some(v(3, -0.3)),
            image: None,
            situations: vec![v(8, 0.5), v(8, -0.5), v(8, 0.9)],
            context: [
                (0.3, Speaker::Other),
                (-0.2, Speaker::User),
                (0.4, Speaker::Other),
            ]
            .map(|(x, speaker)| PreviousTurn {
                embedding: v(8, x),
                speaker,
            })
            .to_vec(),
            experts: Vec::new(),
            reading: None,
        },
        ModelInputs {
            text: None,
            lexicon: analysis(-0.4),
            speech: None,
            image: Some(v(2, 0.7)),
            situations: Vec::new(),
            context: Vec::new(),
            experts: Vec::new(),
            reading: None,
        },
    ]
}

fn names(p: &Prediction) -> Vec<&str> {
    p.attention.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn save_load_round_trip_predicts_the_same() -> anyhow::Result<()> {
    let dir = TempDir::new("roundtrip");
    let (path, in_memory) = save(dir.path(), 1, all_tokens())?;
    let loaded = FusionModel::load(&path)?;
    assert_eq!(loaded.manifest(), in_memory.manifest());
    assert_eq!(loaded.manifest().version, "v0001");
    assert_eq!(loaded.predict(&inputs())?, in_memory.predict(&inputs())?);
    assert_eq!(latest_version(dir.path())?, path);
    Ok(())
}

#[test]
fn attention_covers_the_present_trained_tokens() -> anyhow::Result<()> {
    let dir = TempDir::new("attention");
    let (_, model) = save(dir.path(), 2, all_tokens())?;
    let p = model.predict(&inputs())?;
    // The third situation is beyond max_situations; of three previous turns the two
    // most recent are read, named by their index in the request.
    assert_eq!(
        names(&p[0]),
        [
            "text",
            "lexicon",
            "speech",
            "situation:0",
            "situation:1",
            "context:2",
            "context:1"
        ]
    );
    assert_eq!(names(&p[1]), ["lexicon", "image"]);
    for pred in &p {
        let sum: f32 = pred.attention.iter().map(|(_, w)| w).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert!((pred.sentiment.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(
            pred.emotions,
            analysis(0.0).emotions,
            "emotions come from the lexicon"
        );
    }
    // A version trained on text and lexicon ignores the other inputs.
    let (_, text_only) = save(dir.path(), 2, vec!["text".into(), "lexicon".into()])?;
    let mut odd = inputs();
    odd[0].speech = Some(vec![f32::NAN; 7]);
    let p = text_only.predict(&odd)?;
    assert_eq!(names(&p[0]), ["text", "lexicon"]);
    assert_eq!(names(&p[1]), ["lexicon"]);
    assert_eq!(p[1].attention[0].1, 1.0);
    Ok(())
}

#[test]
fn wrong_input_widths_are_refused() -> anyhow::Result<()> {
    let dir = TempDir::new("widths");
    let (_, model) = save(dir.path(), 3, all_tokens())?;
    let mut bad = inputs();
    bad[1].text = Some(vec![0.0; 5]);
    let Err(e) = model.predict(&bad) else {
        panic!("accepted a 5-wide text token")
    };
    assert!(
        format!("{e:#}").contains("text token has 5 values"),
        "{e:#}"
    );
    bad[1].text = Some(vec![f32::NAN; 8]);
    assert!(model.predict(&bad).is_err());
    Ok(())
}

#[test]
fn corrupt_versions_are_refused_and_skipped() -> anyhow::Result<()> {
    let dir = TempDir::new("corrupt");
    let err = |p: &Path| match FusionModel::load(p) {
        Ok(_) => panic!("loaded the broken version {}", p.display()),
        Err(e) => format!("{e:#}"),
    };
    let (good, _) = save(dir.path(), 4, all_tokens())?;

    let (flipped, _) = save(dir.path(), 5, all_tokens())?;
    let weights = flipped.join(crate::checkpoint::WEIGHTS_FILE);
    let mut bytes = std::fs::read(&weights)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, bytes)?;
    assert!(err(&flipped).contains("checksum mismatch"));

    let (no_manifest, _) = save(dir.path(), 6, all_tokens())?;
    std::fs::remove_file(no_manifest.join(crate::checkpoint::MANIFEST_FILE))?;
    assert!(err(&no_manifest).contains("manifest.json"));

    let (wrong_dims, model) = save(dir.path(), 7, all_tokens())?;
    let mut manifest = model.manifest().clone();
    manifest.dims.text = 9;
    std::fs::write(
        wrong_dims.join(crate::checkpoint::MANIFEST_FILE),
        serde_json::to_vec(&manifest)?,
    )?;
    assert!(err(&wrong_dims).contains("do not match the manifest's dims"));

    std::fs::create_dir(dir.path().join(".tmp-123-456"))?;
    std::fs::create_dir(dir.path().join("v0099"))?;
    std::fs::write(dir.path().join("v0099/model.safetensors"), b"half")?;
    assert_eq!(latest_version(dir.path())?, good);
    Ok(())
}

#[test]
fn no_version_says_how_to_get_one() {
    let dir = TempDir::new("empty");
    for models in [dir.path().to_path_buf(), dir.path().join("absent")] {
        let Err(e) = latest_version(&models) else {
            panic!("found a version in an empty directory")
        };
        assert!(e.to_string().contains("run `empathy train`"), "{e}");
    }
}

#[test]
fn a_zero_head_keeps_the_lexicon_emotions_and_a_head_moves_them() {
    let lexicon = [0.0, 0.1, 0.3, 0.9, 0.0, 0.5, 0.2];
    let kept = corrected_emotions(&[0.0; 7], &lexicon);
    for (k, (a, b)) in kept.iter().zip(lexicon).enumerate() {
        assert!(
            (a - b.clamp(0.02, 0.98)).abs() < 1e-5,
            "emotion {k}: {a} vs {b}"
        );
    }
    // A lexicon score of 0 is still correctable by a modest weight.
    let mut head = [0.0; 7];
    head[4] = 8.0;
    assert!(corrected_emotions(&head, &lexicon)[4] > 0.98);
    head[3] = -8.0;
    assert!(corrected_emotions(&head, &lexicon)[3] < 0.02);
}

fn calibration(temperature: f64) -> Calibration {
    Calibration {
        temperature,
        fitted_on: "test".into(),
        nll_uncalibrated: 1.0,
        nll: 0.9,
    }
}

#[test]
fn the_temperature_softens_the_scores_and_keeps_the_label() -> anyhow::Result<()> {
    let dir = TempDir::new("temperature");
    // The same weights, uncalibrated and with T = 3.
    let (_, plain) = save(dir.path(), 11, all_tokens())?;
    let (path, _) = save_calibrated(dir.path(), 11, all_tokens(), Some(calibration(3.0)))?;
    let calibrated = FusionModel::load(&path)?;
    assert_eq!(plain.manifest().temperature(), 1.0);
    assert_eq!(calibrated.manifest().temperature(), 3.0);
    let (a, b) = (plain.predict(&inputs())?, calibrated.predict(&inputs())?);
    for (p, q) in a.iter().zip(&b) {
        // softmax(z / T) is proportional to softmax(z)^(1 / T).
        let powered = p.sentiment.map(|x| x.powf(1.0 / 3.0));
        let sum: f32 = powered.iter().sum();
        for (got, want) in q.sentiment.iter().zip(powered) {
            assert!(
                (got - want / sum).abs() < 1e-5,
                "{:?} vs {:?}",
                q.sentiment,
                p.sentiment
            );
        }
        let top = |s: &[f32; 3]| (0..3).fold(0, |b, k| if s[k] > s[b] { k } else { b });
        assert_eq!(top(&p.sentiment), top(&q.sentiment));
        assert!(q.sentiment[top(&q.sentiment)] <= p.sentiment[top(&p.sentiment)]);
        assert_eq!(p.emotions, q.emotions, "only the sentiment is calibrated");
    }
    Ok(())
}

#[test]
fn a_bad_temperature_is_refused_and_a_missing_one_is_one() -> anyhow::Result<()> {
    let dir = TempDir::new("bad-temperature");
    for t in [0.0, -1.0, f64::NAN] {
        let saved = save_calibrated(dir.path(), 12, all_tokens(), Some(calibration(t)));
        let Err(e) = saved else {
            panic!("saved a version with temperature {t}");
        };
        assert!(format!("{e:#}").contains("temperature"), "{e:#}");
    }
    // A manifest edited to hold one is refused on load, naming it.
    let (path, model) = save_calibrated(dir.path(), 12, all_tokens(), Some(calibration(2.0)))?;
    let mut json: serde_json::Value = serde_json::to_value(model.manifest())?;
    json["calibration"]["temperature"] = serde_json::json!(0.0);
    std::fs::write(path.join(MANIFEST_FILE), serde_json::to_vec(&json)?)?;
    let Err(e) = FusionModel::load(&path) else {
        panic!("loaded a version with temperature 0");
    };
    assert!(format!("{e:#}").contains("temperature"), "{e:#}");
    // Written before calibration existed: no field, temperature 1.
    json.as_object_mut()
        .expect("an object")
        .remove("calibration");
    std::fs::write(path.join(MANIFEST_FILE), serde_json::to_vec(&json)?)?;
    let old = FusionModel::load(&path)?;
    assert!(old.manifest().calibration.is_none());
    assert_eq!(old.manifest().temperature(), 1.0);
    Ok(())
}

#[test]
fn a_language_plugins_reading_stands_in_for_the_words() -> anyhow::Result<()> {
    let dir = TempDir::new("reading");
    let (_, model) = save(dir.path(), 13, all_tokens())?;
    let reading = WordsReading {
        modality: "text-zh".into(),
        sentiment: [0.8, 0.15, 0.05],
        emotions: [0.1, 0.5, 0.0, 0.0, 0.0, 0.0, 0.4],
    };
    let mut read = inputs().swap_remove(1);
    read.reading = Some(reading.clone());
    let p = model.predict(std::slice::from_ref(&read))?.remove(0);
    assert_eq!(
        (p.sentiment, p.emotions),
        (reading.sentiment, reading.emotions)
    );
    assert!((p.valence + 0.75).abs() < 1e-6);
    assert_eq!(p.attention, [("text-zh".to_string(), 1.0)]);
    // A face the version was not trained on blends in as it does beside English words.
    let (_, text_only) = save(dir.path(), 13, vec!["text".into(), "lexicon".into()])?;
    read.experts = vec![Expert {
        name: "image".into(),
        emotions: [0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.1],
        weight: 1.0,
        sentiment: true,
    }];
    let q = text_only.predict(std::slice::from_ref(&read))?.remove(0);
    assert_eq!(names(&q), ["text-zh", "image"]);
    assert!(
        (q.attention[0].1 - (1.0 - crate::EXPERT_SHARE_WITH_TEXT)).abs() < 1e-6,
        "{:?}",
        q.attention
    );
    assert!(q.emotions[3] > 0.0 && q.sentiment[0] < reading.sentiment[0]);
    Ok(())
}
