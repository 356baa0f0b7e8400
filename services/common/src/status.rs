//! Mapping errors to gRPC statuses with messages a person understands.

use tonic::Status;

/// Longest user-supplied value echoed back in an error, in characters.
pub const QUOTE_CHARS: usize = 64;

/// An internal failure: the detail goes to the log under a fresh id, the client gets
/// that id and nothing it cannot act on (paths, library errors, SQL).
pub fn internal(context: &str, err: impl std::fmt::Display) -> Status {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, %err, "{context}");
    Status::internal(format!(
        "internal error; the server log has the details, id {id}"
    ))
}

/// A user-supplied value for an error message: quoted, at most [`QUOTE_CHARS`]
/// characters then "…", so a request cannot make the error (or the log) arbitrarily large.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

/// Rejects a string field over `limit` characters, naming the field and the limit.
pub fn check_len(field: &str, value: &str, limit: usize) -> Result<(), Status> {
    let n = value.chars().count();
    if n > limit {
        return Err(Status::invalid_argument(format!(
            "{field} is {n} characters long; the limit is {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_len_names_field_and_limit() {
        assert!(check_len("text", "abc", 3).is_ok());
        let err = check_len("text", "abcd", 3).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("text"), "{}", err.message());
        assert!(err.message().contains("limit is 3"), "{}", err.message());
    }

    #[test]
    fn internal_errors_hide_the_detail_and_give_an_id() {
        let err = internal("reading the model", "/srv/secret/path: permission denied");
        assert_eq!(err.code(), tonic::Code::Internal);
        let message = err.message();
        assert!(!message.contains("/srv/secret"), "{message}");
        let id = message.rsplit(' ').next().unwrap_or_default();
        assert_eq!(id.len(), 32, "{message}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{message}");
    }

    #[test]
    fn quote_shows_at_most_64_characters() {
        assert_eq!(quote("vidio"), "\"vidio\"");
        let long = "é".repeat(1000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("{:?}…", "é".repeat(QUOTE_CHARS)));
        assert_eq!(
            quote(&"x".repeat(QUOTE_CHARS)),
            format!("{:?}", "x".repeat(64))
        );
    }
}
