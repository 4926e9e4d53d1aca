//! Validation errors that name the field at fault.
//!
//! Every check in this crate returns a [`ValidationError`] whose `field` is the JSON path of the
//! offending value (`payload.data.capacity.cpu`), so the explorer can return it to the user and
//! the CLI can point at the flag to change.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value that breaks a rule, with the path of the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `data.capacity.memory`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ValidationError {
    /// An error for `field` with `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error seen from one level up: `prefix.field`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Shorthand for validation results.
pub type Valid = Result<(), ValidationError>;

/// Fail with `message` on `field` unless `ok`.
pub(crate) fn ensure(ok: bool, field: &str, message: impl FnOnce() -> String) -> Valid {
    if ok { Ok(()) } else { Err(ValidationError::new(field, message())) }
}

/// A short name: 1 to 64 characters of lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit.
pub fn check_name(value: &str, field: &str) -> Valid {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    ensure(ok, field, || format!("{value:?} is not a valid name: use 1-64 lowercase letters, digits, '-' or '_'"))
}

/// Free text of at most `max` bytes without control characters other than newline and tab.
pub(crate) fn check_text(value: &str, max: usize, field: &str) -> Valid {
    ensure(value.len() <= max, field, || format!("is {} bytes; the limit is {max}", value.len()))?;
    ensure(!value.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), field, || {
        "must not contain control characters".into()
    })
}

/// An `http://` or `https://` URL.
pub(crate) fn check_http_url(value: &str, field: &str) -> Valid {
    let ok = url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    ensure(ok, field, || format!("{value:?} is not an http(s) URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_builds_json_paths() {
        let e = ValidationError::new("cpu", "x").within("capacity").within("data");
        assert_eq!(e.field, "data.capacity.cpu");
        let e = ValidationError::new("[2]", "x").within("volumes");
        assert_eq!(e.field, "volumes[2]");
    }

    #[test]
    fn names_are_restricted() {
        assert!(check_name("kube-test_1", "n").is_ok());
        assert!(check_name("", "n").is_err());
        assert!(check_name("Caps", "n").is_err());
        assert!(check_name("-lead", "n").is_err());
    }
}
