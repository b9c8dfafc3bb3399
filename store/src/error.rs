//! The one error type of the store crate.

/// Everything that can go wrong while reading or writing persisted state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed; `message` is the backend's own description.
    #[error("{context}: {message}")]
    Backend {
        /// What the store was doing, with the key or path involved.
        context: String,
        /// The backend's error message.
        message: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value at {key}: {reason}")]
    Corrupt {
        /// The key whose value is unreadable.
        key: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A `Check` of a batch did not hold, so nothing of the batch was written.
    #[error(
        "version conflict at {key}: expected {}, found {}",
        describe_version(*.expected),
        describe_version(*.found)
    )]
    Conflict {
        /// The checked key.
        key: String,
        /// The version the batch required; `None` means the key had to be absent.
        expected: Option<u64>,
        /// The version actually stored; `None` means the key was absent.
        found: Option<u64>,
    },
    /// A create found the entity already stored.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key of the existing entity.
        key: String,
    },
    /// A key, or a name that would become part of a key, is not well formed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key or name.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record handed to the store does not fit where it is to be written.
    #[error("invalid record for {key}: {reason}")]
    InvalidRecord {
        /// The key the record was meant for.
        key: String,
        /// What does not fit.
        reason: String,
    },
    /// A record could not be encoded for storage.
    #[error("cannot encode the record for {key}: {reason}")]
    Encode {
        /// The key the record was meant for.
        key: String,
        /// The encoder's error message.
        reason: String,
    },
    /// The stored layout is one this build cannot read or migrate.
    #[error(
        "stored schema version {found} is not supported by this build (it writes {supported})"
    )]
    UnsupportedSchema {
        /// The schema version found in the store.
        found: u32,
        /// [`crate::records::SCHEMA_VERSION`] of this build.
        supported: u32,
    },
    /// A file system operation around the backend failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, with the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Words for an optional version in messages: `absent` or `version 3`.
fn describe_version(version: Option<u64>) -> String {
    match version {
        Some(version) => format!("version {version}"),
        None => "absent".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_and_versions() {
        let check = |error: StoreError, expected: &str| assert_eq!(error.to_string(), expected);
        check(
            StoreError::Conflict {
                key: "instances/cache1".into(),
                expected: None,
                found: Some(2),
            },
            "version conflict at instances/cache1: expected absent, found version 2",
        );
        check(
            StoreError::Conflict {
                key: "framework/id".into(),
                expected: Some(1),
                found: None,
            },
            "version conflict at framework/id: expected version 1, found absent",
        );
        check(
            StoreError::Corrupt {
                key: "tasks/cache1/00000".into(),
                reason: "eof".into(),
            },
            "corrupt value at tasks/cache1/00000: eof",
        );
        check(
            StoreError::UnsupportedSchema {
                found: 9,
                supported: 1,
            },
            "stored schema version 9 is not supported by this build (it writes 1)",
        );
    }
}
