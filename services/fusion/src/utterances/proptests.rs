//! However a stream is cut into chunks, the same utterances come out, and nothing panics.

use proptest::prelude::*;

use super::*;

/// Audio as runs of tone and silence (some long enough to end an utterance), with a
/// few odd bytes so that samples straddle chunks.
fn audio() -> impl Strategy<Value = Vec<u8>> {
    let run = (any::<bool>(), 1usize..1500, 0.05f32..0.9);
    prop::collection::vec(run, 1..12).prop_map(|runs| {
        let mut out = Vec::new();
        for (loud, ms, level) in runs {
            for i in 0..ms * 16 {
                let v = if loud {
                    level * (std::f32::consts::TAU * 220.0 * i as f32 / 16_000.0).sin()
                } else {
                    0.0
                };
                out.extend(((v * 32767.0) as i16).to_le_bytes());
            }
        }
        out
    })
}

fn all(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<i16>> {
    let mut u = Utterances::default();
    let mut out: Vec<Vec<i16>> = chunks.flat_map(|c| u.push(&c)).collect();
    out.extend(u.finish());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_utterances_of_one_chunk(
        audio in audio(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let whole = all(std::iter::once(audio.clone()));
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(audio.len() + 1)).collect();
        at.extend([0, audio.len()]);
        at.sort_unstable();
        let pieces = at.windows(2).map(|w| audio[w[0]..w[1]].to_vec());
        prop_assert_eq!(all(pieces), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4000), 0..8)) {
        for u in all(chunks.into_iter()) {
            prop_assert!(u.len() <= MAX_FRAMES * FRAME);
        }
    }
}
