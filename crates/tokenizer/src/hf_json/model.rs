//! The `model` and `added_tokens` sections of a `tokenizer.json`: tokens, merges, and the BPE
//! model's flags.

use crate::added::AddedToken;
use crate::error::Result;
use crate::hf_json::node::Node;
use crate::vocab::{byte_of_piece, TokenKind};

/// What the model and added-token sections say.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) tokens: Vec<String>,
    pub(crate) kinds: Vec<TokenKind>,
    pub(crate) merges: Vec<(String, String)>,
    pub(crate) added: Vec<AddedToken>,
    pub(crate) unk: Option<u32>,
    pub(crate) byte_fallback: bool,
    pub(crate) fuse_unk: bool,
    pub(crate) ignore_merges: bool,
}

/// Reads `model` (which must be a BPE model) and `added_tokens` of `root`.
pub(crate) fn read(root: &Node<'_>) -> Result<Model> {
    let model = root.req("model")?;
    if let Some(t) = model.get("type") {
        let t = t.str()?;
        if t != "BPE" {
            return Err(model.req("type")?.error(format!(
                "unsupported model type {t:?}: only BPE is implemented"
            )));
        }
    }
    if let Some(d) = model.get("dropout") {
        if d.value.as_f64() != Some(0.0) {
            return Err(d.error(format!("BPE dropout {} is not supported", d.value)));
        }
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(n) = model.get(key) {
            if !n.str()?.is_empty() {
                return Err(n.error(format!("{key} {:?} is not supported", n.value)));
            }
        }
    }

    let vocab = model.req("vocab")?;
    let mut entries = Vec::new();
    for (text, id) in vocab.members()? {
        entries.push((text.to_string(), id.id()?, id));
    }
    let added = match root.get("added_tokens") {
        None => Vec::new(),
        Some(list) => list
            .items()?
            .iter()
            .map(added_token)
            .collect::<Result<Vec<_>>>()?,
    };

    // Ids must be 0..n with no gaps; checking the count first keeps a huge id from sizing an
    // allocation.
    let count = entries.len() + added.len();
    let max_id = entries
        .iter()
        .map(|e| e.1)
        .chain(added.iter().map(|t| t.id))
        .max();
    let Some(max_id) = max_id else {
        return Err(vocab.error("the vocabulary is empty"));
    };
    let n = max_id as usize + 1;
    if n > count {
        return Err(vocab.error(format!(
            "token ids go up to {max_id} but there are only {count} tokens (model.vocab and \
             added_tokens together): some ids have no token"
        )));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n];
    for (text, id, node) in entries {
        let slot = &mut tokens[id as usize];
        if let Some(other) = slot {
            return Err(node.error(format!("id {id} is also the id of {other:?}")));
        }
        *slot = Some(text);
    }
    for t in &added {
        // The added token's text wins, as in `tokenizers`' id_to_token.
        tokens[t.id as usize] = Some(t.content.clone());
    }
    let tokens: Vec<String> = match tokens.iter().position(Option::is_none) {
        Some(gap) => {
            return Err(vocab.error(format!(
                "id {gap} has no token (in neither model.vocab nor added_tokens)"
            )))
        }
        None => tokens.into_iter().flatten().collect(),
    };

    let merges = match model.get("merges") {
        None => Vec::new(),
        Some(m) => m.items()?.iter().map(merge).collect::<Result<Vec<_>>>()?,
    };
    let byte_fallback = model.flag("byte_fallback", false)?;
    let unk = match model.get("unk_token") {
        None => None,
        Some(u) => {
            let text = u.str()?;
            let id = tokens.iter().position(|t| t == text).ok_or_else(|| {
                u.error(format!("unknown token {text:?} is not in the vocabulary"))
            })?;
            Some(id as u32)
        }
    };

    let mut kinds = vec![TokenKind::Normal; n];
    if byte_fallback {
        for (kind, text) in kinds.iter_mut().zip(&tokens) {
            if byte_of_piece(text).is_some() {
                *kind = TokenKind::Byte;
            }
        }
    }
    for t in &added {
        kinds[t.id as usize] = if t.special {
            TokenKind::Control
        } else {
            TokenKind::UserDefined
        };
    }
    if let Some(u) = unk {
        kinds[u as usize] = TokenKind::Unknown;
    }

    Ok(Model {
        tokens,
        kinds,
        merges,
        added,
        unk,
        byte_fallback,
        fuse_unk: model.flag("fuse_unk", false)?,
        ignore_merges: model.flag("ignore_merges", false)?,
    })
}

/// One `added_tokens` entry.
fn added_token(n: &Node<'_>) -> Result<AddedToken> {
    let content = n.req("content")?.str()?.to_string();
    if content.is_empty() {
        return Err(n.req("content")?.error("an added token cannot be empty"));
    }
    let special = n.flag("special", false)?;
    Ok(AddedToken {
        id: n.req("id")?.id()?,
        content,
        special,
        lstrip: n.flag("lstrip", false)?,
        rstrip: n.flag("rstrip", false)?,
        single_word: n.flag("single_word", false)?,
        normalized: n.flag("normalized", !special)?,
    })
}

/// One merge: `"a b"` or `["a", "b"]`.
fn merge(n: &Node<'_>) -> Result<(String, String)> {
    if let Some(s) = n.value.as_str() {
        return s
            .split_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| n.error(format!("merge {s:?} is not two tokens and a space")));
    }
    let items = n.items()?;
    match items.as_slice() {
        [a, b] => Ok((a.str()?.to_string(), b.str()?.to_string())),
        _ => Err(n.error(format!("a merge has 2 tokens, not {}", items.len()))),
    }
}
