//! Unit tests of the expansion: propagation, class-mass normalisation, neutral seeds,
//! the k-NN graph, held-out evaluation, publishing.

use super::*;

/// Two clusters joined by one weak edge, and their seeds: node 0 is class 0,
/// node 5 class 1.
fn two_clusters() -> (Graph, Vec<Option<usize>>) {
    let mut seeds = vec![None; 6];
    seeds[0] = Some(0);
    seeds[5] = Some(1);
    let graph = Graph::from_edges(
        6,
        &[
            (0, 1, 0.9),
            (1, 2, 0.9),
            (0, 2, 0.8),
            (3, 4, 0.9),
            (4, 5, 0.9),
            (3, 5, 0.8),
            (2, 3, 0.05),
        ],
    );
    (graph, seeds)
}

#[test]
fn propagation_follows_the_clusters() {
    let (g, seeds) = two_clusters();
    let out = propagate(&g, &seeds, 2, 50);
    let labels: Vec<usize> = out.iter().map(|o| o.expect("reached").0).collect();
    assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
    // Seeds are certain; the bridge nodes are the least confident.
    assert_eq!(out[0].map(|o| o.1), Some(1.0));
    let conf = |i: usize| out[i].map(|o| o.1).unwrap_or(0.0);
    assert!(conf(1) > conf(2) && conf(4) > conf(3), "{out:?}");
    // A node with no edges gets nothing.
    let lonely = Graph::from_edges(3, &[(0, 1, 1.0)]);
    let out = propagate(&lonely, &[Some(1), None, None], 2, 10);
    assert_eq!(out[1].map(|o| o.0), Some(1));
    assert_eq!(out[2], None);
}

#[test]
fn class_mass_normalisation_keeps_clear_labels_and_rebalances_bridges() {
    let (g, seeds) = two_clusters();
    let plain = propagate(&g, &seeds, 2, 50);
    assert_eq!(plain, propagate_with(&g, &seeds, 2, 50, false));
    let cmn = propagate_with(&g, &seeds, 2, 50, true);
    let labels: Vec<usize> = cmn.iter().map(|o| o.expect("reached").0).collect();
    assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
    // Seeds stay clamped.
    assert_eq!(cmn[0], Some((0, 1.0)));
}

#[test]
fn neutral_seeds_are_frequent_words_of_neutral_leaning_tweets() {
    let texts: Vec<String> = [
        "the car is here",
        "a car again",
        "car traffic",
        "traffic jam ahead",
        "nice day",
        "so what",
        "ok then",
    ]
    .map(String::from)
    .to_vec();
    // negative 0, neutral 1, positive 2; the last three are outside the training
    // part.
    let labels = [1, 1, 0, 0, 1, 1, 1];
    let candidates: Vec<(String, usize)> = ["car", "traffic", "jam"]
        .map(|w| (w.to_string(), 3))
        .to_vec();
    let train = [0, 1, 2, 3];
    // car: 3 training tweets, 2 neutral (2/3 >= prior 1/2); traffic: 0 of 2
    // neutral; jam: one tweet only.
    let seeds = neutral_seeds(&texts, &labels, &train, 1, &candidates, 2);
    assert_eq!(seeds, vec!["car".to_string()]);
    // The held-out (neutral) tweets would raise the prior above car's 2/3.
    let all = [0, 1, 2, 3, 4, 5, 6];
    assert!(neutral_seeds(&texts, &labels, &all, 1, &candidates, 2).is_empty());
    // 0 turns the class off.
    assert!(neutral_seeds(&texts, &labels, &train, 1, &candidates, 0).is_empty());
}

#[test]
fn knn_graph_links_nearest_directions() -> anyhow::Result<()> {
    let v = [1.0, 0.0, 0.99, 0.14, 0.0, 1.0, 0.14, 0.99];
    let g = knn_graph(&v, 2, 1)?;
    assert_eq!(g.neighbours[0][0].0, 1);
    assert_eq!(g.neighbours[2][0].0, 3);
    assert!(g.neighbours[0].iter().all(|&(j, _)| j == 1));
    Ok(())
}

#[test]
fn held_out_evaluation_beats_the_majority_on_separable_clusters() {
    // Three cliques (8, 6 and 6 nodes), every node a seed of its clique's class.
    let sizes = [8, 6, 6];
    let mut edges = Vec::new();
    let mut seeds = Vec::new();
    let mut start = 0;
    for (class, &size) in sizes.iter().enumerate() {
        for a in start..start + size {
            seeds.push(Some(class));
            for b in a + 1..start + size {
                edges.push((a, b, 0.9));
            }
        }
        start += size;
    }
    edges.push((0, 8, 0.1));
    edges.push((8, 14, 0.1));
    let g = Graph::from_edges(20, &edges);
    let r = evaluate_held_out(&g, &seeds, 3, 30, 0.2, 7, false);
    assert_eq!((r.seeds, r.held_out), (20, 4));
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.coverage, 1.0);
    assert!(r.majority_accuracy < 1.0);
    // Same seed, same split.
    assert_eq!(r, evaluate_held_out(&g, &seeds, 3, 30, 0.2, 7, false));
}

#[test]
fn publishes_numbered_versions() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("empathy-lexexp-{}", std::process::id()));
    let held = HeldOut {
        seeds: 0,
        held_out: 0,
        accuracy: 0.0,
        majority_accuracy: 0.0,
        majority_class: 0,
        coverage: 0.0,
        class_recall: vec![],
    };
    let manifest = ExpansionManifest {
        version: String::new(),
        created_unix_ms: 0,
        encoder: "test".into(),
        corpus_sha256: "x".into(),
        config: ExpansionConfig::default(),
        emotion_seeds: 0,
        polarity_seeds: 0,
        ambiguous_emotion_words: 0,
        candidates: 0,
        graph_nodes: 0,
        emotion_labelled_candidates: 0,
        polarity_labelled_candidates: 0,
        emotion_labels: vec![],
        polarity_labels: vec![],
        emotion_evaluation: held.clone(),
        polarity_evaluation: held,
        seconds: 0.0,
        neutral_seeds: 0,
        confident_candidates: BTreeMap::new(),
    };
    assert_eq!(latest_version(&dir)?, None);
    let (a, _) = publish(&dir, "word\n", manifest.clone())?;
    let (b, m) = publish(&dir, "word\n", manifest)?;
    assert_eq!(a, dir.join("v0001"));
    assert_eq!(b, dir.join("v0002"));
    assert_eq!(m.version, "v0002");
    assert_eq!(latest_version(&dir)?, Some(b.clone()));
    assert!(b.join("lexicon.tsv").exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
