//! A stage's warnings reach the run summary (the table, and the reports `--json` prints), are kept in
//! its artifact's manifest.json, and come back when the artifact is cached.

mod common;

use common::{by_id, Project};
use medalign_engine::{OutputSlot, RunContext, StageConfig, StageError, StageStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Writes an empty text and warns `message`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Warn {
    message: String,
}

impl StageConfig for Warn {
    const KIND: &'static str = "warn";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Warns its message.";
    fn inputs() -> &'static [medalign_engine::InputSlot] {
        &[]
    }
    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "text", kind: "text", doc: "Nothing." }]
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        cx.warn(self.message.clone());
        std::fs::write(cx.output_dir("text").join("text.txt"), "")?;
        Ok(())
    }
}

#[test]
fn warnings_reach_the_summary_and_survive_the_cache() {
    let mut p = Project::new("name: t\nstages:\n  - id: w\n    kind: warn\n    params: {message: \"a.jsonl: no records\"}\n");
    p.registry.register::<Warn>();
    let first = p.run();
    assert_eq!(by_id(&first, "w").status, StageStatus::Ran);
    assert_eq!(by_id(&first, "w").warnings, ["a.jsonl: no records"]);
    assert!(
        medalign_engine::table(&first).ends_with("\nwarning: stage \"w\": a.jsonl: no records\n")
    );
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json[0]["warnings"], serde_json::json!(["a.jsonl: no records"]));
    let second = p.run();
    assert_eq!(by_id(&second, "w").status, StageStatus::Cached);
    assert_eq!(by_id(&second, "w").warnings, ["a.jsonl: no records"]);
}
