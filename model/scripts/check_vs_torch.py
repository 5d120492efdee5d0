#!/usr/bin/env python3
"""Checks medalign-model against transformers + PEFT on the same GGUF (float32).

1. Tokenization: ~1000 varied sentences from ../shared/data, token ids equal to transformers'.
2. Logits of real medical text: max |diff| <= 1e-3, mean NLL within 1e-4.
3. PEFT interop: an adapter saved by medalign-model gives the same logits in PEFT (<= 1e-3), and
   one saved by PEFT gives the same logits here.

Usage: check_vs_torch.py GGUF [--data ../shared/data] [--bin PATH/TO/check_peer] [--tokens 512]
Build the helper first: cargo build --release -p medalign-model --example check_peer
Needs: torch, transformers, peft, gguf, safetensors (pip). Prints one JSON line per check and
exits non-zero when a check fails.
"""
import argparse, csv, glob, json, os, random, re, subprocess, sys, tempfile


def sentences(data_dir, n):
    """Varied sentences: PubMed abstracts, consumer questions and answers, MMLU, safety prompts."""
    texts = []
    pq = json.load(open(os.path.join(data_dir, "pubmedqa/pqal_train_pool.json")))
    for item in pq.values():
        texts += item["CONTEXTS"] + [item["QUESTION"], item["LONG_ANSWER"]]
    for line in open(os.path.join(data_dir, "medicationqa/medicationqa_even.jsonl")):
        row = json.loads(line)
        texts += [row["Question"], row.get("Answer") or ""]
    for path in sorted(glob.glob(os.path.join(data_dir, "mmlu_medical/val/*.csv"))):
        for row in csv.reader(open(path)):
            texts.append(" ".join(row[:5]))
    for path in sorted(glob.glob(os.path.join(data_dir, "medsafetybench/train/*/*.csv")))[:4]:
        for row in csv.DictReader(open(path)):
            texts += [row.get("harmful_medical_request", ""), row.get("safe_response", "")]
    out = []
    for t in texts:
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", t or "") if len(s.strip()) > 3]
    random.Random(0).shuffle(out)
    # A few edge cases: numbers, doses, unicode, whitespace runs, special tokens.
    extra = ["Take 2x 500mg (1,000 mg) q.i.d. -- max 4 g/24h.", "  leading and  double  spaces\n\nnew lines\t tab",
             "Café-au-lait spots; naïve T-cells; β-blockers; 37.5°C", "<|im_start|>user\nHi<|im_end|>", "Hello", "1234567890"]
    return extra + out[: n - len(extra)]


def run(bin_path, *args):
    subprocess.run([bin_path, *map(str, args)], check=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--data", default=os.path.join(here, "../../../shared/data"))
    ap.add_argument("--bin", default=os.path.expanduser("~/.cache/medalign-target/release/examples/check_peer"))
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--sentences", type=int, default=1000)
    a = ap.parse_args()
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    tmp = tempfile.mkdtemp(prefix="medalign-check-")
    failed = False

    def report(obj, ok):
        nonlocal failed
        failed |= not ok
        print(json.dumps({**obj, "pass": ok}), flush=True)

    # 1. Tokenization.
    sents = sentences(a.data, a.sentences)
    json.dump(sents, open(f"{tmp}/sentences.json", "w"))
    run(a.bin, "tokenize", a.gguf, f"{tmp}/sentences.json", f"{tmp}/ours.json")
    ours = json.load(open(f"{tmp}/ours.json"))
    # transformers' GGUF loader ignores `tokenizer.ggml.pre` = smollm (llama.cpp: digits split
    # one by one before GPT-2's regex), which SmolLM2's own tokenizer.json does with a Digits
    # pre-tokenizer. Compare with both: the original tokenizer (the gate) and the GGUF loader as is.
    from tokenizers import pre_tokenizers
    reference = {"transformers_gguf_loader": tok}
    pre = json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"]
    from gguf import GGUFReader
    field = GGUFReader(a.gguf).fields.get("tokenizer.ggml.pre")
    if field is not None and field.contents() == "smollm" and pre.get("type") == "ByteLevel":
        fixed = AutoTokenizer.from_pretrained(d, gguf_file=f)
        fixed.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
        reference = {"transformers_original_tokenizer": fixed, **reference}
    for i, (name, ref) in enumerate(reference.items()):
        theirs = [ref.encode(s, add_special_tokens=False) for s in sents]
        bad = [k for k, (x, y) in enumerate(zip(ours, theirs)) if x != y]
        report({"check": "tokenization", "reference": name, "sentences": len(sents), "identical": len(sents) - len(bad),
                "first_mismatch": sents[bad[0]] if bad else None}, not bad or i > 0)

    # 2. Logits and NLL on real medical text.
    pq = json.load(open(os.path.join(a.data, "pubmedqa/pqal_train_pool.json")))
    text = " ".join(" ".join(v["CONTEXTS"]) for v in list(pq.values())[:8])
    ids = tok.encode(text, add_special_tokens=False)[: a.tokens]
    json.dump([ids], open(f"{tmp}/ids.json", "w"))
    run(a.bin, "logits", a.gguf, f"{tmp}/ids.json", f"{tmp}/base.safetensors")
    ours = torch.from_numpy(load_file(f"{tmp}/base.safetensors")["row0"])
    with torch.no_grad():
        x = torch.tensor([ids])
        theirs = model(x).logits[0]

    def nll(logits):
        return torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:]).item()

    diff = (ours - theirs).abs().max().item()
    report({"check": "logits", "tokens": len(ids), "max_abs_diff": diff}, diff <= 1e-3)
    d_nll = abs(nll(ours) - nll(theirs))
    report({"check": "mean_nll", "ours": nll(ours), "transformers": nll(theirs), "abs_diff": d_nll}, d_nll <= 1e-4)

    # 3a. Adapter saved here, loaded by PEFT.
    short = ids[:128]
    json.dump([short], open(f"{tmp}/short.json", "w"))
    run(a.bin, "logits", a.gguf, f"{tmp}/short.json", f"{tmp}/ours_lora.safetensors", "--save-random-adapter", f"{tmp}/ours_adapter")
    ours = torch.from_numpy(load_file(f"{tmp}/ours_lora.safetensors")["row0"])
    peft_model = PeftModel.from_pretrained(model, f"{tmp}/ours_adapter").eval()
    with torch.no_grad():
        theirs = peft_model(torch.tensor([short])).logits[0]
        base = peft_model.get_base_model()
    diff = (ours - theirs).abs().max().item()
    report({"check": "adapter_saved_here_loads_in_peft", "max_abs_diff": diff}, diff <= 1e-3)
    model = peft_model.unload()

    # 3b. Adapter saved by PEFT, loaded here.
    cfg = LoraConfig(r=4, lora_alpha=8, use_rslora=True, init_lora_weights=False, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(0)
    pm = get_peft_model(model, cfg).eval()
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.mul_(0.05)
        theirs = pm(torch.tensor([short])).logits[0]
    pm.save_pretrained(f"{tmp}/peft_adapter")
    run(a.bin, "logits", a.gguf, f"{tmp}/short.json", f"{tmp}/peft_lora.safetensors", "--adapter", f"{tmp}/peft_adapter")
    ours = torch.from_numpy(load_file(f"{tmp}/peft_lora.safetensors")["row0"])
    diff = (ours - theirs).abs().max().item()
    report({"check": "adapter_saved_by_peft_loads_here", "max_abs_diff": diff}, diff <= 1e-3)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
