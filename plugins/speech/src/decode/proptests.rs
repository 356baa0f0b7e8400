//! Arbitrary and damaged audio never panics the decoder (or the resampler after it);
//! what is refused is the caller's fault (InvalidInput), with a reason.

use empathy_plugin_api::ErrorKind;
use proptest::prelude::*;

use super::tests::{Wav, wav};
use super::*;
use crate::resample::to_16k;

const MIMES: [&str; 7] = [
    "",
    "audio/wav",
    PCM_MIME,
    "audio/mpeg",
    "audio/flac",
    "audio/ogg",
    "video/nonsense",
];

/// A valid WAV with some bytes overwritten and maybe cut short.
fn damaged_wav() -> impl Strategy<Value = Vec<u8>> {
    let kinds = prop::sample::select(vec![Wav::U8, Wav::I16, Wav::I24, Wav::I32, Wav::F32]);
    let rates = prop::sample::select(vec![8_000u32, 16_000, 44_100]);
    (
        kinds,
        rates,
        1u16..3,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(kind, rate, channels, edits, cut)| {
            let mut bytes = wav(kind, rate, channels, 0.05);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len()) + 1);
            bytes
        })
}

fn check(bytes: &[u8], mime: &str) -> Result<(), TestCaseError> {
    match decode(bytes, mime, 10.0) {
        Ok(audio) => {
            prop_assert!((MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&audio.sample_rate));
            if let Err(e) = to_16k(&audio.samples, audio.sample_rate) {
                prop_assert_eq!(e.kind, ErrorKind::InvalidInput, "{}", e.message);
            }
        }
        Err(e) => {
            prop_assert_eq!(e.kind, ErrorKind::InvalidInput, "{}", e.message);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_not_panicked_on(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        mime in prop::sample::select(MIMES.to_vec()),
    ) {
        check(&bytes, mime)?;
    }

    #[test]
    fn damaged_wav_files_are_decoded_or_refused(
        bytes in damaged_wav(),
        mime in prop::sample::select(MIMES.to_vec()),
    ) {
        check(&bytes, mime)?;
    }
}
