//! The empathy.v1 contract as plain data: the prost messages, their canonical-JSON serde,
//! and the label sets. No gRPC here (the stubs live in `empathy-grpc`), so plugins and the
//! model depend on the contract without compiling tonic or hyper.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/empathy.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/empathy.v1.serde.rs"));

    /// Encoded descriptors of every empathy.v1 file (gRPC server reflection serves them).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/empathy_descriptor.bin"));
}

/// Sentiment labels, in the order of every sentiment score vector.
pub const SENTIMENT_LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// Index of "neutral" in SENTIMENT_LABELS.
pub const NEUTRAL_SENTIMENT: usize = 1;

/// Emotion labels (Ekman's six plus neutral), in the order of every emotion vector.
pub const EMOTION_LABELS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral",
];

/// A tenant name: 1-64 of a-z, 0-9, '-', '_' (it names a directory of the model
/// registry and travels in the `x-empathy-tenant` header in local insecure mode).
pub fn is_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Most reply templates in one tenant's bank or one SuggestReplies request: each is
/// embedded once and scored on every call.
pub const MAX_REPLY_TEMPLATES: usize = 500;

/// Now, in milliseconds since 1970 (0 if the clock is before 1970), as the API's
/// `*_unix_ms` fields count time.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The UTC calendar day of a time in milliseconds since 1970, as the API spells days
/// (`DailyAffect.day`, batch reports): YYYY-MM-DD.
pub fn utc_day(unix_ms: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The tenant of a single local user, and of every caller in insecure mode without
/// the tenant header.
pub const DEFAULT_TENANT: &str = "default";

/// The gRPC metadata key that names the tenant when a server checks no API keys.
pub const TENANT_HEADER: &str = "x-empathy-tenant";

/// Well-known modality names.
pub mod modality {
    pub const TEXT: &str = "text";
    pub const SPEECH: &str = "speech";
    pub const IMAGE: &str = "image";
    pub const LEXICON: &str = "lexicon";
    pub const SITUATION: &str = "situation";

    /// The modality of a plugin that reads text in `language` (a BCP-47 primary tag)
    /// itself, e.g. "text-zh": fusion sends such text there instead of to "text".
    pub fn text_in(language: &str) -> String {
        format!("{TEXT}-{language}")
    }
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

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::AnalyzeRequest;
    use super::{NEUTRAL_SENTIMENT, SENTIMENT_LABELS};

    #[test]
    fn the_neutral_index_names_neutral() {
        assert_eq!(SENTIMENT_LABELS[NEUTRAL_SENTIMENT], "neutral");
    }

    /// Media decoded from a received buffer is a view of that buffer, not a copy: a
    /// 25 MiB clip costs its bytes once on the request path.
    #[test]
    fn media_is_decoded_without_a_copy() -> Result<(), prost::DecodeError> {
        let request = AnalyzeRequest {
            image: vec![7u8; 1 << 20].into(),
            audio: vec![9u8; 1 << 20].into(),
            ..AnalyzeRequest::default()
        };
        let wire = prost::bytes::Bytes::from(request.encode_to_vec());
        let decoded = AnalyzeRequest::decode(wire.clone())?;
        let inside = |p: *const u8| wire.as_ptr_range().contains(&p);
        assert!(inside(decoded.image.as_ptr()), "the image was copied");
        assert!(inside(decoded.audio.as_ptr()), "the audio was copied");
        // Handing it on (fusion to the encoder, a retry) shares it too.
        assert_eq!(decoded.image.clone().as_ptr(), decoded.image.as_ptr());
        Ok(())
    }
}
