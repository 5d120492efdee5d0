//! What a model is asked for an example beyond its prompt turns
//! ([`crate::kinds::examples::prompt_of`]): the reference answer, in the "with reference" setting.

use crate::kinds::examples::Message;

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
