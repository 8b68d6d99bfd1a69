//! Templates for models whose files carry none.
//!
//! The sources are the templates Meta's Hugging Face repositories publish in
//! `tokenizer_config.json`, kept in `crates/chat/templates/`:
//!
//! * Llama 2 chat (`meta-llama/Llama-2-7b-chat-hf`): `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n
//!   {user} [/INST] {assistant} </s><s>[INST] ...`, with BOS before every user turn, EOS after
//!   every assistant turn, contents stripped, and strict user/assistant alternation (else
//!   `raise_exception`). It has no generation prompt: the text always ends with `[/INST]`.
//! * Llama 3 instruct (`meta-llama/Meta-Llama-3-8B-Instruct`): BOS, then per message
//!   `<|start_header_id|>{role}<|end_header_id|>\n\n{content | trim}<|eot_id|>`, and the
//!   assistant header when `add_generation_prompt`. Pass `bos_token = "<|begin_of_text|>"`.

use crate::template::ChatTemplate;

/// The Llama 2 chat template source.
pub const LLAMA2_SOURCE: &str = include_str!("../templates/llama2.jinja");

/// The Llama 3 instruct template source.
pub const LLAMA3_SOURCE: &str = include_str!("../templates/llama3.jinja");

/// The Llama 2 chat template. Render with `bos_token = "<s>"`, `eos_token = "</s>"`.
pub fn llama2() -> ChatTemplate {
    builtin(LLAMA2_SOURCE, "built-in Llama 2 chat template")
}

/// The Llama 3 instruct template. Render with `bos_token = "<|begin_of_text|>"`.
pub fn llama3() -> ChatTemplate {
    builtin(LLAMA3_SOURCE, "built-in Llama 3 instruct template")
}

fn builtin(source: &str, origin: &str) -> ChatTemplate {
    match ChatTemplate::new(source, origin) {
        Ok(t) => t,
        // The sources are constants compiled by the crate's tests.
        Err(e) => unreachable!("{e}"),
    }
}
