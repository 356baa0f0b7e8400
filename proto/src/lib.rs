//! The empathy.v1 contract: messages, client and server stubs, and canonical-JSON serde.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("empathy.v1");
    include!(concat!(env!("OUT_DIR"), "/empathy.v1.serde.rs"));

    /// Encoded descriptors, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("empathy_descriptor");
}

/// Sentiment labels, in the order of every sentiment score vector.
pub const SENTIMENT_LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// Emotion labels (Ekman's six plus neutral), in the order of every emotion vector.
pub const EMOTION_LABELS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral",
];

/// Well-known modality names.
pub mod modality {
    pub const TEXT: &str = "text";
    pub const SPEECH: &str = "speech";
    pub const IMAGE: &str = "image";
    pub const LEXICON: &str = "lexicon";
    pub const SITUATION: &str = "situation";
}

impl v1::EncodeRequest {
    /// A request to encode each of `texts` as `modality` (usually "text").
    pub fn texts<S: Into<String>>(modality: &str, texts: impl IntoIterator<Item = S>) -> Self {
        Self {
            modality: modality.to_string(),
            inputs: texts
                .into_iter()
                .map(|t| v1::EncodeInput {
                    payload: Some(v1::encode_input::Payload::Text(t.into())),
                    mime_type: String::new(),
                })
                .collect(),
            language: String::new(),
        }
    }
}
