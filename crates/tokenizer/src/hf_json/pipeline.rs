//! The `normalizer`, `pre_tokenizer`, `decoder` and `post_processor` sections of a
//! `tokenizer.json`: only the forms Llama-family tokenizers use are accepted, anything else is
//! an error naming its JSON path.

use crate::bpe_vocab::{Prepend, Spaces};
use crate::error::Result;
use crate::hf_json::node::Node;
use crate::normalize::SPACE_SYMBOL;
use crate::pretokenizer::PreTokenizer;
use crate::tokenize::LeadingSpace;

/// The components of a `Sequence` (or the node itself when it is no sequence).
fn flatten<'a>(n: &Node<'a>, list_key: &str) -> Result<Vec<Node<'a>>> {
    if n.type_name()? != "Sequence" {
        return Ok(vec![n.clone()]);
    }
    let mut out = Vec::new();
    for item in n.req(list_key)?.items()? {
        out.extend(flatten(&item, list_key)?);
    }
    Ok(out)
}

/// A `{"String": s}` or `{"Regex": s}` pattern: (is regex, text).
fn pattern<'a>(n: &Node<'a>) -> Result<(bool, &'a str)> {
    if let Some(s) = n.get("String") {
        return Ok((false, s.str()?));
    }
    if let Some(s) = n.get("Regex") {
        return Ok((true, s.str()?));
    }
    Err(n.error("expected {\"String\": ...} or {\"Regex\": ...}"))
}

/// The `normalizer`: nothing, or `Prepend("▁")` and/or `Replace(" ", "▁")`.
pub(crate) fn normalizer(n: Option<Node<'_>>) -> Result<Option<Spaces>> {
    let Some(n) = n else { return Ok(None) };
    let (mut prepend, mut replace) = (false, false);
    for step in flatten(&n, "normalizers")? {
        match step.type_name()? {
            "Prepend" => {
                let p = step.req("prepend")?;
                if p.str()? != SPACE_SYMBOL {
                    return Err(p.error("only Prepend(\"\u{2581}\") is supported"));
                }
                prepend = true;
            }
            "Replace" => {
                let (regex, from) = pattern(&step.req("pattern")?)?;
                let to = step.req("content")?.str()?;
                if regex || from != " " || to != SPACE_SYMBOL {
                    return Err(step.error(format!(
                        "only Replace(\" \", \"\u{2581}\") is supported, not {from:?} -> {to:?}"
                    )));
                }
                replace = true;
            }
            other => {
                return Err(step.error(format!("unsupported normalizer {other:?}")));
            }
        }
    }
    match (prepend, replace) {
        (false, false) => Ok(None),
        (true, true) => Ok(Some(Spaces::Metaspace {
            prepend: Prepend::EverySegment,
            split: false,
        })),
        (false, true) => Ok(Some(Spaces::Metaspace {
            prepend: Prepend::Never,
            split: false,
        })),
        (true, false) => Err(
            n.error("Prepend(\"\u{2581}\") without Replace(\" \", \"\u{2581}\") is not supported")
        ),
    }
}

/// What the `pre_tokenizer` section says.
#[derive(Debug, Default)]
pub(crate) struct PreTokenization {
    pub(crate) split: Option<PreTokenizer>,
    pub(crate) byte_level: bool,
    pub(crate) spaces: Option<Spaces>,
}

/// The `pre_tokenizer`: ByteLevel, a Split with the Llama 3 or GPT-2 regex, Metaspace, or a
/// sequence of those.
pub(crate) fn pre_tokenizer(n: Option<Node<'_>>) -> Result<PreTokenization> {
    let mut out = PreTokenization::default();
    let Some(n) = n else { return Ok(out) };
    for step in flatten(&n, "pretokenizers")? {
        match step.type_name()? {
            "ByteLevel" => {
                if step.flag("add_prefix_space", false)? {
                    return Err(step
                        .req("add_prefix_space")?
                        .error("ByteLevel add_prefix_space is not supported"));
                }
                if step.flag("use_regex", true)? {
                    set_split(&mut out.split, PreTokenizer::Gpt2, &step)?;
                }
                out.byte_level = true;
            }
            "Split" => {
                let pat = step.req("pattern")?;
                let (_, text) = pattern(&pat)?;
                let p = PreTokenizer::from_pattern(text).ok_or_else(|| {
                    pat.error(format!(
                        "unsupported split pattern {text:?} (the Llama 3 and GPT-2 regexes are known)"
                    ))
                })?;
                let behavior = step.req("behavior")?;
                if behavior.str()? != "Isolated" {
                    return Err(behavior.error(format!(
                        "split behavior {:?} is not supported (only \"Isolated\")",
                        behavior.str()?
                    )));
                }
                if step.flag("invert", false)? {
                    return Err(step
                        .req("invert")?
                        .error("inverted splits are not supported"));
                }
                set_split(&mut out.split, p, &step)?;
            }
            "Metaspace" => out.spaces = Some(metaspace(&step)?),
            other => return Err(step.error(format!("unsupported pre-tokenizer {other:?}"))),
        }
    }
    Ok(out)
}

/// Records the splitting pre-tokenizer; there can be only one.
fn set_split(slot: &mut Option<PreTokenizer>, p: PreTokenizer, step: &Node<'_>) -> Result<()> {
    if slot.replace(p).is_some() {
        Err(step.error("a second splitting pre-tokenizer is not supported"))
    } else {
        Ok(())
    }
}

/// A Metaspace pre-tokenizer.
fn metaspace(n: &Node<'_>) -> Result<Spaces> {
    let r = n.req("replacement")?;
    if r.str()? != SPACE_SYMBOL {
        return Err(r.error("only the replacement \"\u{2581}\" is supported"));
    }
    Ok(Spaces::Metaspace {
        prepend: prepend_scheme(n)?,
        split: n.flag("split", true)?,
    })
}

/// A Metaspace `prepend_scheme` (or the older `add_prefix_space` flag).
fn prepend_scheme(n: &Node<'_>) -> Result<Prepend> {
    match n.get("prepend_scheme") {
        Some(s) => match s.str()? {
            "first" => Ok(Prepend::First),
            "always" => Ok(Prepend::Always),
            "never" => Ok(Prepend::Never),
            other => Err(s.error(format!("unknown prepend_scheme {other:?}"))),
        },
        None => Ok(if n.flag("add_prefix_space", true)? {
            Prepend::Always
        } else {
            Prepend::Never
        }),
    }
}

/// What the `decoder` section says.
#[derive(Debug)]
pub(crate) struct Decoding {
    pub(crate) byte_level: bool,
    pub(crate) leading_space: LeadingSpace,
}

/// The `decoder`: ByteLevel, or a sequence of Replace("▁", " "), ByteFallback, Fuse and
/// Strip(" ", n, 0), or Metaspace.
pub(crate) fn decoder(n: Option<Node<'_>>) -> Result<Decoding> {
    let mut out = Decoding {
        byte_level: false,
        leading_space: LeadingSpace::Keep,
    };
    let Some(n) = n else { return Ok(out) };
    for step in flatten(&n, "decoders")? {
        match step.type_name()? {
            "ByteLevel" => out.byte_level = true,
            "ByteFallback" | "Fuse" => {}
            "Replace" => {
                let (regex, from) = pattern(&step.req("pattern")?)?;
                let to = step.req("content")?.str()?;
                if regex || from != SPACE_SYMBOL || to != " " {
                    return Err(step.error(format!(
                        "only Replace(\"\u{2581}\", \" \") is supported, not {from:?} -> {to:?}"
                    )));
                }
            }
            "Strip" => {
                let content = step.req("content")?.str()?;
                let start = step
                    .get("start")
                    .and_then(|s| s.value.as_u64())
                    .unwrap_or(0);
                let stop = step.get("stop").and_then(|s| s.value.as_u64()).unwrap_or(0);
                if content != " " || start > 1 || stop != 0 {
                    return Err(step.error(format!(
                        "only Strip(\" \", 1, 0) is supported, not Strip({content:?}, {start}, {stop})"
                    )));
                }
                if start == 1 {
                    out.leading_space = LeadingSpace::StripFirst;
                }
            }
            "Metaspace" => {
                if prepend_scheme(&step)? != Prepend::Never {
                    out.leading_space = LeadingSpace::StripFirst;
                }
            }
            other => return Err(step.error(format!("unsupported decoder {other:?}"))),
        }
    }
    Ok(out)
}

/// What the `post_processor` section says: the special tokens a TemplateProcessing puts
/// before and after a single sequence.
#[derive(Debug, Default)]
pub(crate) struct Template {
    pub(crate) first: Option<u32>,
    pub(crate) last: Option<u32>,
}

/// The `post_processor`: TemplateProcessing, ByteLevel (offsets only), or a sequence of them.
pub(crate) fn post_processor(n: Option<Node<'_>>) -> Result<Template> {
    let mut out = Template::default();
    let Some(n) = n else { return Ok(out) };
    for step in flatten(&n, "processors")? {
        match step.type_name()? {
            "ByteLevel" => {}
            "TemplateProcessing" => {
                let single = step.req("single")?.items()?;
                let specials = step.get("special_tokens");
                let id_of = |piece: &Node<'_>| -> Result<Option<u32>> {
                    let Some(tok) = piece.get("SpecialToken") else {
                        return Ok(None);
                    };
                    let name = tok.req("id")?.str()?;
                    let entry = specials
                        .as_ref()
                        .and_then(|s| s.get(name))
                        .ok_or_else(|| tok.error(format!("{name:?} is not in special_tokens")))?;
                    let ids = entry.req("ids")?.items()?;
                    match ids.as_slice() {
                        [one] => Ok(Some(one.id()?)),
                        _ => Err(entry.error("a template special token must be one id")),
                    }
                };
                if let Some(first) = single.first() {
                    out.first = id_of(first)?;
                }
                if single.len() > 1 {
                    if let Some(last) = single.last() {
                        out.last = id_of(last)?;
                    }
                }
            }
            other => return Err(step.error(format!("unsupported post-processor {other:?}"))),
        }
    }
    Ok(out)
}
