//! The error a plugin returns for one call, on both sides of the boundary.

use std::fmt;

use crate::abi;

/// What went wrong, coarse enough to map onto a gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something the plugin cannot encode (gRPC INVALID_ARGUMENT).
    InvalidInput,
    /// Too much work at once; the caller may retry later (gRPC RESOURCE_EXHAUSTED).
    ResourceExhausted,
    /// The plugin cannot serve now, e.g. its model is missing (gRPC UNAVAILABLE).
    Unavailable,
    /// A bug or a panic in the plugin, or a broken reply (gRPC INTERNAL).
    Internal,
}

/// An error for one call; the plugin (and the process) keeps serving.
#[derive(Debug, Clone)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: String,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceExhausted, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The error for a panic caught at the boundary, with the panic's message.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic payload that is not a string)");
        Self::internal(format!("plugin panicked: {what}"))
    }

    /// The status code that carries this error's kind across the boundary.
    pub(crate) fn status(&self) -> i32 {
        match self.kind {
            ErrorKind::InvalidInput => abi::STATUS_INVALID_INPUT,
            ErrorKind::ResourceExhausted => abi::STATUS_RESOURCE_EXHAUSTED,
            ErrorKind::Unavailable => abi::STATUS_UNAVAILABLE,
            ErrorKind::Internal => abi::STATUS_INTERNAL,
        }
    }

    /// Rebuilds the error from a non-OK status and its message. An unknown code (a
    /// newer or broken plugin) is an internal error rather than a guess.
    pub(crate) fn from_status(status: i32, message: String) -> Self {
        match status {
            abi::STATUS_INVALID_INPUT => Self::invalid_input(message),
            abi::STATUS_RESOURCE_EXHAUSTED => Self::resource_exhausted(message),
            abi::STATUS_UNAVAILABLE => Self::unavailable(message),
            abi::STATUS_INTERNAL => Self::internal(message),
            other => Self::internal(format!("plugin returned unknown status {other}: {message}")),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::ResourceExhausted => "resource exhausted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal error",
        })
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_every_kind() {
        for err in [
            PluginError::invalid_input("a"),
            PluginError::resource_exhausted("b"),
            PluginError::unavailable("c"),
            PluginError::internal("d"),
        ] {
            let back = PluginError::from_status(err.status(), err.message.clone());
            assert_eq!(back.kind, err.kind);
            assert_eq!(back.message, err.message);
        }
    }

    #[test]
    fn unknown_status_is_internal_and_says_so() {
        let err = PluginError::from_status(77, "odd".into());
        assert_eq!(err.kind, ErrorKind::Internal);
        assert_eq!(err.message, "plugin returned unknown status 77: odd");
    }

    #[test]
    fn panic_payloads_become_messages() {
        let text: Box<dyn std::any::Any + Send> = Box::new("boom");
        let owned: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        let other: Box<dyn std::any::Any + Send> = Box::new(42_u8);
        assert_eq!(
            PluginError::from_panic(&*text).message,
            "plugin panicked: boom"
        );
        assert_eq!(
            PluginError::from_panic(&*owned).message,
            "plugin panicked: bang"
        );
        assert!(
            PluginError::from_panic(&*other)
                .message
                .contains("not a string")
        );
    }
}
