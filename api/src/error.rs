//! What can be wrong with a policy document.

use crate::validate::FieldError;

/// A policy document that is not a sound `MemoryPolicy`, or a duration that is not one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML document is not a well-formed `MemoryPolicy`: bad syntax, a
    /// missing field, a value of the wrong type or enum. The YAML error is
    /// part of the message (it names the field and line), not a cause.
    #[error("document {document}: {error}")]
    Yaml {
        document: usize,
        error: serde_yaml::Error,
    },

    /// A YAML document parsed but has fields a `MemoryPolicy` does not.
    #[error("document {document}:{}", fields.iter().map(|f| format!("\n  unknown field {f}")).collect::<String>())]
    UnknownFields {
        document: usize,
        fields: Vec<String>,
    },

    /// A YAML document is some other kind of object.
    #[error("document {document}: expected {expected}, found {found}")]
    WrongKind {
        document: usize,
        expected: String,
        found: String,
    },

    /// A policy parsed but breaks rules the schema enforces.
    #[error("document {document}{}:{}", named(name), list(errors))]
    Invalid {
        document: usize,
        name: String,
        errors: Vec<FieldError>,
    },

    /// A string is not a duration such as `15s`.
    #[error(
        "`{0}` is not a duration: use whole numbers with units ms, s, m or h, like 15s, 1m30s or 500ms"
    )]
    Duration(String),

    /// A string is not a growth rate such as `1Mi/min`.
    #[error(
        "`{0}` is not a growth rate: use a memory quantity above zero per s, min or h, like 1Mi/min, 512Ki/s or 64Mi/h"
    )]
    Growth(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}
