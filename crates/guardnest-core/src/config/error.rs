//! What reading or validating the configuration can fail with.

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file that failed.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: String,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}
