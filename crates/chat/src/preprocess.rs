//! Source rewrites that make minijinja read a template as Jinja2 does.
//!
//! * Jinja2's lexer turns every `\r\n` and lone `\r` of the source into `\n` (its default
//!   `newline_sequence`), in text and string literals alike. minijinja keeps them, so the
//!   source is normalized first. Line numbers stay the same as Jinja2's.
//! * transformers adds a `{% generation %}...{% endgeneration %}` block (its
//!   `AssistantTracker` extension), which renders its body unchanged, in a scope of its own.
//!   minijinja has no such tag; `{% with %}...{% endwith %}` behaves the same (same
//!   whitespace control, own scope), so the tag names are swapped in place. Tags inside
//!   `{% raw %}` blocks are left alone.

/// Applies both rewrites.
pub fn prepare(source: &str) -> String {
    rewrite_generation_tags(&normalize_newlines(source))
}

/// `\r\n` and `\r` become `\n`.
fn normalize_newlines(source: &str) -> String {
    if !source.contains('\r') {
        return source.to_string();
    }
    source.replace("\r\n", "\n").replace('\r', "\n")
}

/// Replaces the tag names `generation` / `endgeneration` by `with` / `endwith`.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut in_raw = false;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        // "{%", an optional whitespace-control sign, whitespace, then the tag name.
        let mut name_start = 2;
        if tag[name_start..].starts_with(['-', '+']) {
            name_start += 1;
        }
        name_start += tag[name_start..].len() - tag[name_start..].trim_start().len();
        let name_len = tag[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tag.len() - name_start);
        let name = &tag[name_start..name_start + name_len];
        let replacement = match name {
            "raw" => {
                in_raw = true;
                None
            }
            "endraw" => {
                in_raw = false;
                None
            }
            "generation" if !in_raw => Some("with"),
            "endgeneration" if !in_raw => Some("endwith"),
            _ => None,
        };
        out.push_str(&tag[..name_start]);
        out.push_str(replacement.unwrap_or(name));
        rest = &tag[name_start + name_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_with() {
        assert_eq!(
            prepare("a{%- generation -%}b{%endgeneration\n%}{% generations %}"),
            "a{%- with -%}b{%endwith\n%}{% generations %}"
        );
        assert_eq!(
            prepare("{% raw %}{% generation %}{% endraw %}"),
            "{% raw %}{% generation %}{% endraw %}"
        );
    }

    #[test]
    fn newlines_are_normalized() {
        assert_eq!(prepare("a\r\nb\rc\n"), "a\nb\nc\n");
    }
}
