//! The real SmolLM2-135M-Instruct GGUF against figures taken from `transformers` on the same file
//! (float32). Skipped, with a note, when the model is not in the cache: fetch it with
//! `medalign generate --model smollm2-135m-instruct --prompt hi`.

use candle_core::{Device, Tensor};
use medalign_model::fetch::KnownModel;
use medalign_model::{
    generate, score_tokens, GenerationConfig, LanguageModel, LinearFormat, LoadOptions, Message,
    ModelLocation,
};

const PROMPT_IDS: [u32; 43] = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
    19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 5428, 2956, 8771, 282, 40783, 327, 253,
    2458, 2490, 47, 2, 198, 1, 520, 9531, 198,
];
const GREEDY_32: [u32; 32] = [
    504, 5428, 2956, 8771, 282, 40783, 327, 253, 2458, 2490, 314, 3431, 216, 36, 32, 32, 9209, 567,
    1194, 28, 564, 451, 416, 4341, 4509, 335, 1212, 10397, 284, 260, 6137, 282,
];
const QUESTION: &str = "What is the maximum daily dose of acetaminophen for a healthy adult?";

fn load(format: LinearFormat) -> Option<LanguageModel> {
    let path = KnownModel::by_name("smollm2-135m-instruct")?.cached_path();
    if !path.is_file() {
        eprintln!("note: skipped, {} is not cached", path.display());
        return None;
    }
    let opts = LoadOptions { format, device: Device::Cpu };
    Some(LanguageModel::load_location(ModelLocation::Gguf(path), &opts).unwrap())
}

#[test]
fn tokenizer_matches_transformers() {
    let Some(lm) = load(LinearFormat::Quantized) else { return };
    let t = &lm.tokenizer;
    assert_eq!(t.encode("Hello", false).unwrap(), [19556]);
    assert_eq!(
        t.encode("In 2023, 150 mg of drug", false).unwrap(),
        [788, 216, 34, 32, 34, 35, 28, 216, 33, 37, 32, 9209, 282, 2547]
    );
    assert_eq!(t.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap(), [1, 4093, 198, 6004, 2]);
    assert_eq!(t.decode(&[788, 216, 34, 32, 34, 35], false).unwrap(), "In 2023");
    assert_eq!((t.bos_token(), t.eos_token()), (Some("<|im_start|>"), Some("<|im_end|>")));
}

#[test]
fn chat_prompt_matches_apply_chat_template() {
    let Some(lm) = load(LinearFormat::Quantized) else { return };
    assert_eq!(lm.chat_prompt_ids(&[Message::new("user", QUESTION)]).unwrap(), PROMPT_IDS);
    assert!(lm.eos_ids().contains(&2));
}

#[test]
fn nll_and_greedy_answer_match_transformers() {
    let Some(lm) = load(LinearFormat::F32) else { return };
    let text = "Acetaminophen overdose can cause acute liver failure. The maximum recommended daily dose \
        for healthy adults is 4 grams. Patients taking warfarin should avoid NSAIDs such as ibuprofen \
        because of the increased risk of bleeding. "
        .repeat(40);
    let ids: Vec<u32> = lm.tokenizer.encode(&text, false).unwrap()[..256].to_vec();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mask = Tensor::ones((1, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
    let total = medalign_model::sequence_logprobs(&lm.model, &input, &mask).unwrap();
    let nll = -total.to_vec1::<f32>().unwrap()[0] as f64 / 255.0;
    assert!((nll - 0.605_435_8).abs() < 1e-4, "mean NLL {nll}, transformers 0.6054358");

    let cfg = GenerationConfig { max_new_tokens: 32, eos_ids: lm.eos_ids(), ..Default::default() };
    let out =
        generate(&lm.model, &lm.tokenizer, &[PROMPT_IDS.to_vec()], &cfg, &mut |_| true).unwrap();
    assert_eq!(out[0].token_ids, GREEDY_32);
    assert!(out[0].text.starts_with("The maximum daily dose of acetaminophen"));
    // Scoring the answer finds every token greedy: generation and scoring agree.
    let ll =
        score_tokens(&lm.model, &[(PROMPT_IDS.to_vec(), GREEDY_32.to_vec())], 4096).unwrap()[0];
    assert!(ll.is_greedy && ll.tokens == 32 && ll.logprob < 0.0, "{ll:?}");
}

#[test]
fn batched_generation_equals_one_by_one_and_scores_its_answers() {
    let Some(lm) = load(LinearFormat::Quantized) else { return };
    let prompts: Vec<Vec<u32>> = ["Is ibuprofen safe with warfarin?", QUESTION]
        .iter()
        .map(|q| lm.chat_prompt_ids(&[Message::new("user", *q)]).unwrap())
        .collect();
    assert_ne!(prompts[0].len(), prompts[1].len());
    let cfg = GenerationConfig { max_new_tokens: 12, eos_ids: lm.eos_ids(), ..Default::default() };
    let mut streamed = String::new();
    let both = generate(&lm.model, &lm.tokenizer, &prompts, &cfg, &mut |ev| {
        if ev.sequence == 1 {
            streamed.push_str(ev.text);
        }
        true
    })
    .unwrap();
    assert_eq!(streamed, both[1].text);
    for (p, g) in prompts.iter().zip(&both) {
        let alone =
            generate(&lm.model, &lm.tokenizer, std::slice::from_ref(p), &cfg, &mut |_| true)
                .unwrap();
        assert_eq!(alone[0].token_ids, g.token_ids);
        // Scoring reads the exact f32 product of the dequantized weights, generation the 8-bit
        // kernels and an f16 cache: their logits differ by up to about one, so a near tie may be
        // broken differently. Greedy agreement is asserted on the exact path (`nll_and_greedy_...`).
        let ll = score_tokens(&lm.model, &[(p.clone(), g.token_ids.clone())], 4096).unwrap()[0];
        assert!(ll.tokens == g.token_ids.len() && ll.logprob < 0.0, "{ll:?}");
    }
}

#[test]
fn stop_strings_cut_the_answer() {
    let Some(lm) = load(LinearFormat::Quantized) else { return };
    let prompt = lm.chat_prompt_ids(&[Message::new("user", QUESTION)]).unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: 32,
        eos_ids: lm.eos_ids(),
        stop: vec!["acetaminophen".into()],
        ..Default::default()
    };
    let out = generate(&lm.model, &lm.tokenizer, &[prompt], &cfg, &mut |_| true).unwrap();
    assert_eq!(out[0].text, "The maximum daily dose of ");
    assert_eq!(out[0].finish_reason, medalign_model::generation::FinishReason::Stop);
}

#[test]
fn text_scoring_prefers_the_right_answer_and_chat_answers() {
    let Some(lm) = load(LinearFormat::F32) else { return };
    let ll = lm
        .score_pairs(
            &[("The capital of France is", " Paris"), ("The capital of France is ", "London")],
            4096,
        )
        .unwrap();
    assert!(ll[0].logprob > ll[1].logprob, "{ll:?}");
    assert!(ll[0].is_greedy && ll[0].tokens == 1);
    let (ctx, cont) = lm.encode_pair("The capital of France is ", "London").unwrap();
    assert_eq!(
        lm.tokenizer.decode(&cont, false).unwrap(),
        " London",
        "the trailing space moves to the continuation"
    );
    assert!(!ctx.is_empty());
    let cfg = GenerationConfig { max_new_tokens: 8, ..Default::default() };
    let out = lm.chat(&[vec![Message::new("user", QUESTION)]], &cfg, &mut |_| true).unwrap();
    assert_eq!(out[0].token_ids, GREEDY_32[..8]);
}

#[test]
fn streamed_pieces_make_the_decoded_text_of_characters_split_over_tokens() {
    let Some(lm) = load(LinearFormat::Quantized) else { return };
    let t = &lm.tokenizer;
    let ids = t.encode("Dosis: 5 µg/kg — très élevée ✓ 中文 💊 done.", false).unwrap();
    let mut s = medalign_model::tokenizer::TextStream::new(true);
    let mut streamed = String::new();
    for n in 1..=ids.len() {
        if let Some(piece) = s.next(t, &ids[..n]).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "{piece:?} after {n} tokens");
            streamed.push_str(&piece);
        }
    }
    streamed.push_str(&s.finish(t, &ids).unwrap());
    assert_eq!(streamed, t.decode(&ids, true).unwrap());
    assert_eq!(streamed, "Dosis: 5 µg/kg — très élevée ✓ 中文 💊 done.");
}
