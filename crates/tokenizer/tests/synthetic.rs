//! Merge semantics on small hand-made vocabularies.

use tokenizer::TokenKind::{Byte, Normal, Unused, UserDefined};
use tokenizer::{SpmTokenizer, TokenKind, Vocab};

/// A vocabulary of `<unk>`, `<s>`, `</s>`, then `(piece, score, kind)` entries.
fn vocab(entries: &[(&str, f32, TokenKind)]) -> Vocab {
    let mut pieces = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0; 3];
    let mut kinds = vec![TokenKind::Unknown, TokenKind::Control, TokenKind::Control];
    for (p, s, k) in entries {
        pieces.push(p.to_string());
        scores.push(*s);
        kinds.push(*k);
    }
    let mut v = Vocab::new(pieces, scores, kinds);
    v.bos = Some(1);
    v.eos = Some(2);
    v
}

#[test]
fn highest_score_first_then_leftmost() {
    // "▁abc": ab (score -1) beats bc (-2); then "▁" + "ab"? not a piece; "ab"+"c" = abc.
    let v = vocab(&[
        ("\u{2581}", -10.0, Normal),
        ("a", -10.0, Normal),
        ("b", -10.0, Normal),
        ("c", -10.0, Normal),
        ("ab", -1.0, Normal),
        ("bc", -2.0, Normal),
        ("abc", -5.0, Normal),
    ]);
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("abc", false), [3, 9]);
    // Ties: "aaa" with "aa" merges the leftmost pair first.
    let v = vocab(&[
        ("\u{2581}", -10.0, Normal),
        ("a", -10.0, Normal),
        ("aa", -1.0, Normal),
    ]);
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("aaa", false), [3, 5, 4]);
}

#[test]
fn control_and_byte_pieces_are_never_merged_into() {
    let v = vocab(&[
        ("<", -10.0, Normal),
        ("s", -10.0, Normal),
        (">", -10.0, Normal),
        ("<s", -1.0, Normal),
        ("<0x41>", 0.0, Byte),
        ("\u{2581}", -10.0, Normal),
    ]);
    let t = SpmTokenizer::from_vocab(v).unwrap();
    // "<s>" stays "<s" + ">", never the control token 1.
    assert_eq!(t.encode("<s>", false), [8, 6, 5]);
    // "A" has no piece: byte fallback.
    assert_eq!(t.encode("A", false), [8, 7]);
    assert_eq!(t.decode(&[8, 7]).unwrap(), "A");
}

#[test]
fn unused_pieces_are_split_back() {
    // "ab" is unused but lets "abc" form; "xy" is unused and stays split.
    let mut v = vocab(&[
        ("a", -10.0, Normal),
        ("b", -10.0, Normal),
        ("c", -10.0, Normal),
        ("x", -10.0, Normal),
        ("y", -10.0, Normal),
        ("ab", -1.0, Unused),
        ("abc", -2.0, Normal),
        ("xy", -1.0, Unused),
    ]);
    v.add_dummy_prefix = false;
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("abc", false), [9]);
    assert_eq!(t.encode("xy", false), [6, 7]);
    assert_eq!(t.encode("ab", false), [3, 4]);
}

#[test]
fn user_defined_pieces_are_matched_whole_and_frozen() {
    let mut v = vocab(&[
        ("a", -10.0, Normal),
        ("b", -10.0, Normal),
        ("ab", -1.0, Normal),
        ("b<t>", 5.0, Normal),
        ("<t>", 0.0, UserDefined),
        ("<", -10.0, Normal),
    ]);
    v.add_dummy_prefix = false;
    let t = SpmTokenizer::from_vocab(v).unwrap();
    // "<t>" is one frozen symbol: "b" + "<t>" never merges into "b<t>".
    assert_eq!(t.encode("ab<t>a<", false), [5, 7, 3, 8]);
}

#[test]
fn unknown_runs_merge_without_byte_fallback() {
    let mut v = vocab(&[("\u{2581}", -1.0, Normal), ("a", -1.0, Normal)]);
    v.byte_fallback = false;
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("a\u{e9}\u{e8}a\u{e0}", false), [3, 4, 0, 4, 0]);
    assert_eq!(t.decode(&[3, 4, 0, 4]).unwrap(), "a \u{2047} a");
}

#[test]
fn removes_extra_whitespace_and_strips_leading_spaces_on_decode() {
    let mut v = vocab(&[
        ("\u{2581}", -1.0, Normal),
        ("a", -1.0, Normal),
        ("\u{2581}a", -0.5, Normal),
    ]);
    v.remove_extra_whitespaces = true;
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("   a    a  ", false), [5, 5]);
    assert_eq!(t.encode("    ", false), Vec::<u32>::new());
    assert_eq!(t.decode(&[3, 3, 5]).unwrap(), "a");
}

#[test]
fn empty_text_and_bos() {
    let v = vocab(&[("\u{2581}", -1.0, Normal)]);
    let t = SpmTokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("", true), [1]);
    assert_eq!(t.encode("", false), Vec::<u32>::new());
    assert_eq!(t.decode(&[]).unwrap(), "");
}

#[test]
fn invalid_vocabularies_are_errors() {
    let mut v = vocab(&[("a", 0.0, Normal)]);
    v.scores.pop();
    assert!(SpmTokenizer::from_vocab(v).is_err());
    let mut v = vocab(&[("a", 0.0, Normal)]);
    v.bos = Some(99);
    assert!(SpmTokenizer::from_vocab(v).is_err());
    let v = vocab(&[("<0xZZ>", 0.0, Byte)]);
    assert!(SpmTokenizer::from_vocab(v).is_err());
    let v = Vocab::new(vec![], vec![], vec![]);
    assert!(SpmTokenizer::from_vocab(v).is_err());
}
