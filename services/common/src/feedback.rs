//! The checks a correction passes wherever it arrives (fusion's Feedback, the trainer's
//! SubmitFeedback), so both refuse the same things with the same words.

use empathy_proto::{EMOTION_LABELS, SENTIMENT_LABELS, v1::FeedbackRequest};
use tonic::Status;

/// Normalises the labels (trimmed, lower case) and refuses a label outside its set,
/// two empty corrections, or a rating outside 0..=5.
pub fn check(fb: &mut FeedbackRequest) -> Result<(), Status> {
    fb.sentiment = label("sentiment", &fb.sentiment, &SENTIMENT_LABELS)?;
    fb.emotion = label("emotion", &fb.emotion, &EMOTION_LABELS)?;
    if fb.sentiment.is_empty() && fb.emotion.is_empty() {
        return Err(Status::invalid_argument(
            "nothing to learn: both corrections are empty; set sentiment and/or emotion to the \
             right label",
        ));
    }
    if !(0..=5).contains(&fb.rating) {
        return Err(Status::invalid_argument(format!(
            "rating {} is outside 1..5 (0 = no rating)",
            fb.rating
        )));
    }
    Ok(())
}

fn label(field: &str, value: &str, labels: &[&str]) -> Result<String, Status> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() || labels.contains(&v.as_str()) {
        return Ok(v);
    }
    Err(Status::invalid_argument(format!(
        "{field} {} is not a label: use one of {} (or leave it empty for no correction)",
        crate::status::quote(value),
        labels.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_with_reasons() {
        let mut ok = FeedbackRequest {
            sentiment: " Positive ".into(),
            ..Default::default()
        };
        assert!(check(&mut ok).is_ok());
        assert_eq!(ok.sentiment, "positive");
        let refused = |fb: FeedbackRequest, why: &str| {
            let mut fb = fb;
            let err = check(&mut fb).expect_err("refused");
            assert!(err.message().contains(why), "{}", err.message());
        };
        let fb = |s: &str, e: &str, rating: i32| FeedbackRequest {
            sentiment: s.into(),
            emotion: e.into(),
            rating,
            ..Default::default()
        };
        refused(fb("happy", "", 0), "not a label");
        refused(fb("", "joyful", 0), "not a label");
        refused(fb("", "", 0), "nothing to learn");
        refused(fb("negative", "", 9), "rating 9");
    }
}
