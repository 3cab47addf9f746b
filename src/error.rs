//! The one error type of the core. Every failure that reaches a user carries one of the codes
//! API.md lists; the napi layer turns it into a JS `PersistError` with the same code.

use std::fmt;

/// The codes of API.md's `PersistError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidConfig,
    InvalidArgument,
    InvalidValue,
    NotFound,
    Conflict,
    Closed,
    Connection,
    Timeout,
    Permission,
    Adapter,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::InvalidValue => "INVALID_VALUE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Closed => "CLOSED",
            ErrorCode::Connection => "CONNECTION",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Permission => "PERMISSION",
            ErrorCode::Adapter => "ADAPTER",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A failure with a code and a message a person can act on.
///
/// `cause_ref` points at a JS value kept on the JS side (the error a custom adapter threw), so
/// the binding can attach it as `cause` without the core holding JS values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistError {
    pub code: ErrorCode,
    pub message: String,
    pub cause_ref: Option<u32>,
}

pub type Result<T, E = PersistError> = std::result::Result<T, E>;

impl PersistError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PersistError {
            code,
            message: message.into(),
            cause_ref: None,
        }
    }
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn closed() -> Self {
        Self::new(ErrorCode::Closed, "the store is closed")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for PersistError {}
