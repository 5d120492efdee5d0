//! Chat templates rendered here equal `transformers.apply_chat_template` (goldens in fixtures/).

use medalign_model::{ChatTemplate, Message};
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn smollm2_template_matches_transformers() {
    let t =
        ChatTemplate::new(&fixture("smollm2_chat_template.jinja"), "<|im_start|>", "<|im_end|>")
            .unwrap();
    let cases: Vec<Value> = serde_json::from_str(&fixture("smollm2_chat_golden.json")).unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let got = t.render(&messages(&case["messages"]), agp).unwrap();
        assert_eq!(got, case["rendered"].as_str().unwrap());
    }
}

#[test]
fn trim_blocks_lstrip_blocks_strip_and_special_tokens_follow_hugging_face() {
    let golden: Value = serde_json::from_str(&fixture("mistral_style_golden.json")).unwrap();
    let t = ChatTemplate::new(
        &fixture("mistral_style.jinja"),
        golden["bos_token"].as_str().unwrap(),
        golden["eos_token"].as_str().unwrap(),
    )
    .unwrap();
    let msgs = messages(&golden["messages"]);
    assert_eq!(t.render(&msgs, true).unwrap(), golden["rendered"].as_str().unwrap());
    let err = t.render(&msgs[1..], false).unwrap_err().to_string();
    assert!(err.contains("Conversation roles must alternate"), "{err}");
}

#[test]
fn chatml_fallback_opens_an_assistant_turn() {
    let t = ChatTemplate::chatml("", "<|im_end|>");
    let got = t.render(&[Message::new("user", "Hi")], true).unwrap();
    assert_eq!(got, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}
