//! Mapping errors to gRPC statuses with messages a person understands.

use tonic::Status;

/// An internal failure: log the detail, tell the client what failed without leaking
/// internals it cannot act on.
pub fn internal(context: &str, err: impl std::fmt::Display) -> Status {
    tracing::error!(%err, "{context}");
    Status::internal(format!("{context}: {err}"))
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
}
