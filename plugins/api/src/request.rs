//! The checks every plugin makes before looking at a request's inputs.

use empathy_proto::v1::EncodeRequest;

use crate::PluginError;

/// Refuses a request for another modality, without inputs, or with more than
/// `max_batch` of them; `what` names the inputs in the message ("images", "clips").
pub fn check_request(
    request: &EncodeRequest,
    modality: &str,
    max_batch: usize,
    what: &str,
) -> Result<(), PluginError> {
    if request.modality != modality {
        return Err(PluginError::invalid_input(format!(
            "modality {:?} is not served by the {modality} plugin (expected {modality:?})",
            request.modality
        )));
    }
    let n = request.inputs.len();
    if n == 0 {
        return Err(PluginError::invalid_input("request has no inputs"));
    }
    if n > max_batch {
        return Err(PluginError::invalid_input(format!(
            "batch of {n} {what} is over the limit of {max_batch} (setting max_batch)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::EncodeInput;

    use super::*;

    #[test]
    fn names_what_is_wrong() {
        let request = |modality: &str, n: usize| EncodeRequest {
            modality: modality.into(),
            inputs: vec![EncodeInput::default(); n],
            language: String::new(),
        };
        let err = |r, max| {
            check_request(&r, "image", max, "images")
                .err()
                .map(|e| e.message)
        };
        assert!(err(request("text", 1), 4).is_some_and(|m| m.contains("\"text\"")));
        assert!(err(request("image", 0), 4).is_some_and(|m| m.contains("no inputs")));
        assert!(err(request("image", 5), 4).is_some_and(|m| m.contains("batch of 5 images")));
        assert!(err(request("image", 4), 4).is_none());
    }
}
