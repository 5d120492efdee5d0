#!/usr/bin/env python3
"""Does llama.cpp read a GGUF the way MedAlign does? Scores sentences from ../shared/data-style
medical text with llama.cpp (llama-cpp-python) and with `medalign score` on the same file and
prints both log-likelihoods and their largest difference.

Usage: llamacpp_gguf.py MODEL.gguf [--medalign target/release/medalign]
Needs: pip install llama-cpp-python numpy (in a venv outside the repo)."""
import argparse, json, subprocess
import numpy as np
from llama_cpp import Llama

PAIRS = [
    ("Patients taking warfarin should avoid", " NSAIDs such as ibuprofen because of the increased risk of bleeding."),
    ("Acetaminophen overdose can cause", " acute liver failure, which is treated with N-acetylcysteine."),
    ("The first-line treatment for type 2 diabetes is", " metformin, together with diet and exercise."),
    ("A patient with chest pain radiating to the left arm", " should be evaluated for myocardial infarction."),
]

ap = argparse.ArgumentParser()
ap.add_argument("gguf")
ap.add_argument("--medalign", default="target/release/medalign")
a = ap.parse_args()
llm = Llama(model_path=a.gguf, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
worst = 0.0
for ctx, cont in PAIRS:
    head = llm.tokenize(ctx.encode(), add_bos=False, special=False)
    full = llm.tokenize((ctx + cont).encode(), add_bos=False, special=False)
    assert full[: len(head)] == head, "context tokens change when the continuation is appended"
    llm.reset()
    llm.eval(full)
    logits = np.array(llm.scores[: len(full)], dtype=np.float64)
    lp = 0.0
    for i in range(len(head), len(full)):
        row = logits[i - 1]
        lp += row[full[i]] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    out = subprocess.run([a.medalign, "score", "--model", a.gguf, "--context", ctx, "--continuation", cont, "--json"],
                         capture_output=True, text=True, check=True).stdout
    ours = json.loads(out)
    assert ours["tokens"] == len(full) - len(head), (ours, len(full) - len(head))
    diff = abs(ours["logprob"] - lp)
    worst = max(worst, diff / ours["tokens"])
    print(json.dumps({"context": ctx, "llama_cpp": round(float(lp), 4), "medalign": round(ours["logprob"], 4), "tokens": ours["tokens"]}))
print(json.dumps({"max_abs_diff_per_token": float(worst)}))
