//! The real public files in `../shared/data` read completely, with their published counts.
//! Skipped (passing) in a checkout without `../shared`.

mod common;

use medalign_stages::kinds::examples::read_examples;

fn real(source: &str) -> Option<common::Ran> {
    let dir = common::shared_data()?;
    let ran = common::ingest(&format!("sources:\n  - {source}\n"), &dir).unwrap();
    assert_eq!(ran.count("rows_rejected"), 0);
    assert_eq!(ran.count("rows_in"), ran.count("rows_out"));
    Some(ran)
}

#[test]
fn pubmedqa_pool_has_500() {
    let Some(ran) = real("{path: pubmedqa/pqal_train_pool.json, format: pubmedqa}") else { return };
    let rows = read_examples(&ran.table("examples")).unwrap();
    assert_eq!(rows.len(), 500);
    assert_eq!(rows[0].id, "pubmedqa:10808977");
    assert_eq!(
        rows[0].messages[0].content,
        "Can tailored interventions increase mammography use among HMO women?"
    );
    assert_eq!(rows[0].origin, "pubmedqa/pqal_train_pool.json:2");
    assert!(rows.iter().all(|e| ["yes", "no", "maybe"].contains(&e.answer.as_deref().unwrap())));
}

#[test]
fn each_mmlu_dev_file_has_5() {
    let Some(ran) = real("{path: mmlu_medical/dev, format: mmlu}") else { return };
    for subject in [
        "anatomy",
        "clinical_knowledge",
        "college_biology",
        "college_medicine",
        "medical_genetics",
        "professional_medicine",
    ] {
        assert_eq!(ran.count("rows_out"), 30);
        let rows = read_examples(&ran.table("examples")).unwrap();
        assert_eq!(
            rows.iter().filter(|e| e.subject.as_deref() == Some(subject)).count(),
            5,
            "{subject}"
        );
    }
    let rows = read_examples(&ran.table("examples")).unwrap();
    assert_eq!(rows[0].messages[0].content, "What is the embryological origin of the hyoid bone?");
    assert_eq!(rows[0].answer.as_deref(), Some("D"));
}

#[test]
fn mmlu_val_reads_whole() {
    let Some(ran) = real("{path: mmlu_medical/val, format: mmlu}") else { return };
    // anatomy 14, clinical_knowledge 29, college_biology 16, college_medicine 22, medical_genetics 11,
    // professional_medicine 31 (the MMLU validation split)
    assert_eq!(ran.count("rows_out"), 123);
}

#[test]
fn medsafetybench_train_has_900() {
    let Some(ran) = real("{path: medsafetybench/train, format: medsafetybench}") else { return };
    assert_eq!(ran.count("rows_out"), 900);
    let rows = read_examples(&ran.table("examples")).unwrap();
    assert!(rows.iter().all(|e| e.task == "safety" && e.messages.len() == 2));
    assert_eq!(rows[0].id, "medsafetybench:gpt4/med_safety_demonstrations_category_1:0");
    let ids: std::collections::HashSet<_> = rows.iter().map(|e| &e.id).collect();
    assert_eq!(ids.len(), 900);
}

#[test]
fn medicationqa_through_a_mapping() {
    let source = "{path: medicationqa/medicationqa_even.jsonl, format: jsonl, name: medicationqa, task: instruction, \
                  fields: {prompt: Question, response: Answer, subject: \"Focus (Drug)\"}}";
    let Some(ran) = real(source) else { return };
    assert_eq!(ran.count("rows_out"), 345);
}
