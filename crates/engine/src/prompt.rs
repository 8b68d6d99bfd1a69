//! Turning a conversation into prompt ids: render the chat template, then encode the text so
//! that special-token text the *template* wrote becomes special tokens while special-token
//! text inside a *message* stays plain text.

use std::ops::Range;

use chat::{ChatTemplate, RenderContext};
use serde_json::Value;
use tokenizer::{EncodeOptions, Tokenize};

use crate::Result;

/// Marks a message's content in a probe rendering; private-use code points no real text uses.
fn sentinel(i: usize) -> String {
    format!("\u{F8FE}{i}\u{F8FF}")
}

/// Where each message's content landed in the rendered text, found by rendering once more
/// with sentinels in place of the contents. `None` when the template transforms contents
/// beyond trimming (then the caller falls back to parsing specials everywhere).
fn content_spans(
    template: &ChatTemplate,
    ctx: &RenderContext,
    full: &str,
) -> Option<Vec<Range<usize>>> {
    let mut probe = ctx.clone();
    let mut contents = Vec::new();
    for (i, m) in probe.messages.iter_mut().enumerate() {
        if let Some(Value::String(c)) = m.get("content") {
            contents.push(c.clone());
            m["content"] = Value::String(sentinel(i));
        } else {
            contents.push(String::new());
        }
    }
    let rendered = template.render(&probe).ok()?;
    let mut spans = Vec::new();
    let (mut src, mut out) = (0usize, 0usize); // positions in `rendered` and in `full`
    while let Some(start) = rendered[src..].find('\u{F8FE}') {
        let start = src + start;
        let end = start + rendered[start..].find('\u{F8FF}')? + '\u{F8FF}'.len_utf8();
        let i: usize = rendered[start + '\u{F8FE}'.len_utf8()..end - '\u{F8FF}'.len_utf8()]
            .parse()
            .ok()?;
        let literal = &rendered[src..start];
        if !full[out..].starts_with(literal) {
            return None;
        }
        out += literal.len();
        let content = contents.get(i)?;
        let used = [
            content.as_str(),
            content.trim(),
            content.trim_start(),
            content.trim_end(),
        ]
        .into_iter()
        .find(|c| full[out..].starts_with(c))?;
        spans.push(out..out + used.len());
        out += used.len();
        src = end;
    }
    (full[out..] == rendered[src..]).then_some(spans)
}

/// Encodes `full`: special tokens are recognised outside `spans` only; the text between them
/// is encoded as plain text, exactly as a tokenizer that splits on specials first would.
fn encode_outside(tok: &dyn Tokenize, full: &str, spans: &[Range<usize>]) -> Vec<u32> {
    let specials = tok.special_tokens();
    let in_span = |pos: usize| spans.iter().any(|s| s.start <= pos && pos < s.end);
    let mut ids = Vec::new();
    let mut text_start = 0;
    let mut pos = 0;
    while pos < full.len() {
        let hit = if in_span(pos) {
            None
        } else {
            specials
                .iter()
                .filter(|(s, _)| !s.is_empty() && full[pos..].starts_with(s.as_str()))
                .max_by_key(|(s, _)| s.len())
        };
        match hit {
            Some((s, id)) => {
                ids.extend(tok.encode_with(&full[text_start..pos], EncodeOptions::default()));
                ids.push(*id);
                pos += s.len();
                text_start = pos;
            }
            None => pos += full[pos..].chars().next().map_or(1, char::len_utf8),
        }
    }
    ids.extend(tok.encode_with(&full[text_start..], EncodeOptions::default()));
    ids
}

/// Renders the conversation and encodes it (no BOS added: templates write their own).
pub fn encode_chat(
    tok: &dyn Tokenize,
    template: &ChatTemplate,
    ctx: &RenderContext,
) -> Result<(String, Vec<u32>)> {
    let full = template.render(ctx)?;
    let ids = match content_spans(template, ctx, &full) {
        Some(spans) => encode_outside(tok, &full, &spans),
        None => tok.encode_with(
            &full,
            EncodeOptions {
                parse_special: true,
                ..EncodeOptions::default()
            },
        ),
    };
    Ok((full, ids))
}
