//! Arbitrary requests never panic the validation, and every refusal is INVALID_ARGUMENT.

use empathy_proto::v1::{AnalyzeOptions, ExtraInput, Turn};
use proptest::prelude::*;

use super::*;

fn limits() -> Limits {
    Limits {
        max_text_chars: 50,
        max_audio_bytes: 64,
        max_audio_pcm_bytes: 64,
        max_image_bytes: 64,
        max_context_turns: 3,
        max_situations: 4,
        max_deadline_ms: 1000,
    }
}

/// Short strings and long ones, any characters, speakers and languages among them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ a-zA-Z-]{0,12}",
        Just("user".to_string()),
        Just("en".to_string()),
        ".{40,80}",
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..100)
}

fn request() -> impl Strategy<Value = AnalyzeRequest> {
    let turn = (text(), text()).prop_map(|(speaker, text)| Turn { speaker, text });
    let extra = (text(), bytes()).prop_map(|(modality, data)| ExtraInput {
        modality,
        data: data.into(),
        ..Default::default()
    });
    let options = (
        any::<u32>(),
        any::<u32>(),
        text(),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(num_situations, deadline_ms, language, disable_modalities)| AnalyzeOptions {
                num_situations: num_situations % 10,
                deadline_ms: deadline_ms % 2000,
                language,
                disable_modalities,
                ..Default::default()
            },
        );
    (
        text(),
        bytes(),
        bytes(),
        bytes(),
        prop::collection::vec(turn, 0..5),
        prop::collection::vec(extra, 0..3),
        prop::option::of(options),
    )
        .prop_map(
            |(text, audio, image, audio_pcm, context, extra, options)| AnalyzeRequest {
                text,
                audio: audio.into(),
                image: image.into(),
                audio_pcm: audio_pcm.into(),
                context,
                extra,
                options,
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn refusals_are_invalid_argument_with_a_bounded_message(req in request()) {
        let known = ["text".to_string(), "speech".to_string(), "image".to_string()];
        if let Err(status) = check(&req, &limits(), &known) {
            prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
            // Echoed values are truncated: no message grows with the request.
            prop_assert!(status.message().len() < 400, "{}", status.message());
        }
    }
}
