//! `chat` turns a conversation into prompt text with the model's chat template, exactly as
//! Hugging Face transformers' `apply_chat_template(..., tokenize=False)` does.
//!
//! It owns chat templates: compiling Jinja sources (from a file or from
//! `tokenizer_config.json`), the Jinja environment transformers renders them in
//! (whitespace options, `raise_exception`, `strftime_now`, Python-style `tojson`,
//! `{% generation %}`, Python string methods, Python-style printing of values), rendering,
//! and built-in Llama 2 / Llama 3 templates for models that carry none.
//!
//! It must never know about tensors, tokenizers' internals (ids, vocabularies, merges: the
//! BOS/EOS token *texts* are all it is given) or models.
//!
//! Known differences from Jinja2, all outside what published chat templates do (the tests
//! list each one against transformers' own output): iterating over `none` gives nothing
//! (Jinja2: `TypeError`); tuples are lists, so they print as `[1, 'a']`; there is no
//! printf-style `%` on strings; `~` writes very large or small floats in fixed notation
//! (`{{ x }}`, `|string` and `|join` print them as Python does); `namespace` accepts names
//! starting with `_`; `strftime_now` uses UTC.

#![forbid(unsafe_code)]

mod builtins;
mod config;
mod context;
mod convert;
mod environment;
mod error;
mod methods;
mod preprocess;
mod pyrepr;
pub mod strftime;
mod template;
mod tojson;

pub use builtins::{llama2, llama3, LLAMA2_SOURCE, LLAMA3_SOURCE};
pub use config::from_tokenizer_config;
pub use context::{normalize_messages, RenderContext, STRFTIME_NOW_FIXED};
pub use error::ChatError;
pub use template::ChatTemplate;

/// The crate's result type.
pub type Result<T, E = ChatError> = std::result::Result<T, E>;
