//! The one error type of the crate.

/// Why a chat template could not be compiled, chosen or rendered.
///
/// Every variant names the template's origin (a file path, or
/// `tokenizer_config.json chat_template`) so a message is useful on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The template source does not parse.
    #[error("{origin}, line {line}: chat template syntax error: {detail}")]
    Syntax {
        /// Where the template came from.
        origin: String,
        /// 1-based line of the source where parsing failed (0 when unknown).
        line: usize,
        /// What the parser found.
        detail: String,
    },
    /// The template called `raise_exception(msg)`: it rejects this conversation.
    #[error("{origin}: chat template rejected the conversation: {msg}")]
    Raised {
        /// Where the template came from.
        origin: String,
        /// The message the template passed to `raise_exception`, unchanged.
        msg: String,
    },
    /// Rendering failed for another reason (a type error, an undefined value used, ...).
    #[error("{origin}, line {line}: chat template render error: {detail}")]
    Render {
        /// Where the template came from.
        origin: String,
        /// 1-based line of the source being rendered (0 when unknown).
        line: usize,
        /// What went wrong.
        detail: String,
    },
    /// A `tokenizer_config.json` has a `chat_template` entry of an unusable shape.
    #[error("{origin}: {detail}")]
    Config {
        /// Where the configuration came from.
        origin: String,
        /// What is wrong with the entry.
        detail: String,
    },
}
