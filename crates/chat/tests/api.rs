//! Compile errors, `raise_exception`, `tokenizer_config.json` forms and the render context.

use chat::{from_tokenizer_config, ChatError, ChatTemplate, RenderContext};
use serde_json::json;

fn user(text: &str) -> serde_json::Value {
    json!({"role": "user", "content": text})
}

#[test]
fn syntax_error_names_origin_and_line() {
    let source = "{% for m in messages %}\n{{ m.content }}\n{% if %}\n{% endfor %}";
    let err = ChatTemplate::new(source, "models/x/chat_template.jinja").unwrap_err();
    match &err {
        ChatError::Syntax { origin, line, .. } => {
            assert_eq!(origin, "models/x/chat_template.jinja");
            assert_eq!(*line, 3);
        }
        other => panic!("want a syntax error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("models/x/chat_template.jinja"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn unclosed_block_is_a_syntax_error() {
    let err =
        ChatTemplate::new("{% if true %}open", "tokenizer_config.json chat_template").unwrap_err();
    assert!(matches!(err, ChatError::Syntax { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("tokenizer_config.json chat_template"),
        "{err}"
    );
}

#[test]
fn raise_exception_gives_the_message() {
    let t = ChatTemplate::new(
        "{% if messages|length > 1 %}{{ raise_exception('Only one message, got ' ~ messages|length) }}{% endif %}ok",
        "inline",
    )
    .unwrap();
    let one = RenderContext::new(vec![user("a")]);
    assert_eq!(t.render(&one).unwrap(), "ok");
    let err = t
        .render(&RenderContext::new(vec![user("a"), user("b")]))
        .unwrap_err();
    match &err {
        ChatError::Raised { msg, origin } => {
            assert_eq!(msg, "Only one message, got 2");
            assert_eq!(origin, "inline");
        }
        other => panic!("want Raised, got {other:?}"),
    }
    assert!(err.to_string().contains("Only one message, got 2"), "{err}");
}

#[test]
fn render_error_names_origin_and_line() {
    let t = ChatTemplate::new("line one\n{{ 1 + 'a' }}", "bad.jinja").unwrap();
    let err = t.render(&RenderContext::default()).unwrap_err();
    match &err {
        ChatError::Render { origin, line, .. } => {
            assert_eq!(origin, "bad.jinja");
            assert_eq!(*line, 2);
        }
        other => panic!("want Render, got {other:?}"),
    }
}

#[test]
fn tokenizer_config_string_form() {
    let config = json!({
        "bos_token": "<s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"
    });
    let t = from_tokenizer_config(&config, "tokenizer_config.json")
        .unwrap()
        .unwrap();
    assert_eq!(t.origin(), "tokenizer_config.json chat_template");
    let mut ctx = RenderContext::new(vec![user("hi")]);
    ctx.bos_token = "<s>".into();
    assert_eq!(t.render(&ctx).unwrap(), "<s>[user] hi");
}

#[test]
fn tokenizer_config_list_form_picks_default() {
    let config = json!({
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "DEFAULT {{ messages|length }}"},
            {"name": "rag", "template": "RAG"}
        ]
    });
    let t = from_tokenizer_config(&config, "tokenizer_config.json")
        .unwrap()
        .unwrap();
    assert_eq!(
        t.render(&RenderContext::new(vec![user("x")])).unwrap(),
        "DEFAULT 1"
    );
    assert!(t.origin().contains("default"), "{}", t.origin());
}

#[test]
fn tokenizer_config_without_template() {
    assert!(
        from_tokenizer_config(&json!({"bos_token": "<s>"}), "c.json")
            .unwrap()
            .is_none()
    );
    assert!(
        from_tokenizer_config(&json!({"chat_template": null}), "c.json")
            .unwrap()
            .is_none()
    );
}

#[test]
fn tokenizer_config_bad_shapes_are_errors() {
    let no_default = json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
    let err = from_tokenizer_config(&no_default, "c.json").err().unwrap();
    assert!(matches!(err, ChatError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("tool_use"), "{err}");

    let malformed = json!({"chat_template": [{"name": "default"}]});
    let err = from_tokenizer_config(&malformed, "c.json").err().unwrap();
    assert!(err.to_string().contains("chat_template[0]"), "{err}");

    let number = json!({"chat_template": 3});
    assert!(from_tokenizer_config(&number, "c.json").is_err());
    assert!(from_tokenizer_config(&json!([1]), "c.json").is_err());

    let broken = json!({"chat_template": "{% if %}"});
    let err = from_tokenizer_config(&broken, "c.json").err().unwrap();
    assert!(matches!(err, ChatError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains("c.json chat_template"), "{err}");
}

#[test]
fn extra_variables_and_tools_reach_the_template() {
    let t = ChatTemplate::new(
        "{{ date_string }}|{{ tools is none }}|{{ tools|length if tools else 0 }}|{{ documents }}",
        "inline",
    )
    .unwrap();
    let mut ctx = RenderContext::new(vec![user("x")]);
    ctx.extra.insert("date_string".into(), "1 Jan 2025".into());
    assert_eq!(t.render(&ctx).unwrap(), "1 Jan 2025|True|0|None");
    ctx.tools = Some(json!([{"type": "function"}]));
    assert_eq!(t.render(&ctx).unwrap(), "1 Jan 2025|False|1|None");
}

#[test]
fn messages_pass_through_with_extra_fields() {
    let t = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}:{{ m.tool_calls[0].function.name }}:{{ m.content is defined }};{% endfor %}",
        "inline",
    )
    .unwrap();
    let ctx = RenderContext::new(vec![json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]
    })]);
    // As in transformers, a null content is dropped before rendering.
    assert_eq!(t.render(&ctx).unwrap(), "assistant:f:False;");
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<ChatTemplate>();
    let t = std::sync::Arc::new(chat::llama3());
    let handle = {
        let t = t.clone();
        std::thread::spawn(move || t.render(&RenderContext::new(vec![user("hi")])))
    };
    let from_thread = handle.join().unwrap().unwrap();
    assert_eq!(
        from_thread,
        t.render(&RenderContext::new(vec![user("hi")])).unwrap()
    );
}
