//! The latest expansion this checkout published parses with the serving model's parser.

use empathy_model::lexicon::expansion::{self, Expansion};
use empathy_model::test_support::assets_dir;
use empathy_training::lexicon_expansion::{default_dir, latest_version};

#[test]
fn the_published_expansions_parse() {
    let dir = default_dir(&assets_dir());
    let Ok(Some(latest)) = latest_version(&dir) else {
        return; // none published in this checkout
    };
    let x = Expansion::load_published(&latest).expect("the latest expansion loads");
    assert!(x.len() > 1000, "{}", x.len());
    assert_eq!(
        x.reference().min_confidence,
        expansion::DEFAULT_MIN_CONFIDENCE
    );
}
