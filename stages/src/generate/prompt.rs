//! What a model is asked for an example: its prompt turns (the conversation before the reference
//! answer, with any context and answer options written into the first user turn) and the reference.

use crate::example::{Example, Message};

/// The prompt turns of `e` and its reference answer.
///
/// The prompt is every message before the last assistant turn (all messages when there is none);
/// `context` is put before the first user turn's text and `choices` after it, as `A. ...` lines.
pub fn prompt_of(e: &Example) -> (Vec<Message>, Option<String>) {
    let last_assistant = e.messages.iter().rposition(|m| m.role == "assistant");
    let mut turns: Vec<Message> = match last_assistant {
        Some(i) => e.messages[..i].to_vec(),
        None => e.messages.clone(),
    };
    if let Some(first) = turns.iter_mut().find(|m| m.role == "user") {
        if let Some(ctx) = e.context.as_deref().filter(|c| !c.trim().is_empty()) {
            first.content = format!("{ctx}\n\n{}", first.content);
        }
        if !e.choices.is_empty() {
            let options: Vec<String> = e
                .choices
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}. {c}", (b'A' + i as u8) as char))
                .collect();
            first.content = format!("{}\n\n{}", first.content, options.join("\n"));
        }
    }
    let reference = last_assistant.map(|i| e.messages[i].content.clone());
    (turns, reference)
}

/// The system turn that shows a model the reference answer (the "with reference" setting).
pub fn reference_system(system: Option<&str>, reference: &str) -> Message {
    let lead = system.map(|s| format!("{s}\n\n")).unwrap_or_default();
    Message::new(
        "system",
        format!(
            "{lead}An expert wrote the reference answer below. Use it to write a correct, complete and kind \
             answer in your own words; do not mention that you were given it.\n\nReference answer:\n{reference}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_stops_before_the_reference_and_carries_context_and_options() {
        let e = Example {
            messages: vec![
                Message::new("user", "Which drug?"),
                Message::new("assistant", "Protamine."),
            ],
            context: Some("A patient on heparin bleeds.".into()),
            choices: vec!["Protamine".into(), "Vitamin K".into()],
            ..Default::default()
        };
        let (turns, reference) = prompt_of(&e);
        assert_eq!(
            turns,
            vec![Message::new(
                "user",
                "A patient on heparin bleeds.\n\nWhich drug?\n\nA. Protamine\nB. Vitamin K"
            )]
        );
        assert_eq!(reference.as_deref(), Some("Protamine."));
        let bare = Example { messages: vec![Message::new("user", "Hi")], ..Default::default() };
        assert_eq!(prompt_of(&bare), (vec![Message::new("user", "Hi")], None));
    }
}
