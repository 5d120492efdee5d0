#!/usr/bin/env python3
"""Checks medalign-model's BERT sentence encoder against sentence-transformers on all-MiniLM-L6-v2.

Embeds ~50 medical sentences with both (the Rust side through the `bert_minilm_dump` test, which
fetches the model into ~/.cache/medalign/models/all-minilm-l6-v2 on first use), prints the cosine of
each pair of embeddings and the throughput of each side, and fails if any cosine is below 0.9999.

    /work/venv-st/bin/python model/scripts/check_minilm.py [--batch 32] [--repeat 20]

Needs sentence-transformers (and torch) in the Python running it; run from the repository root.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "A 45-year-old man presents with crushing substernal chest pain radiating to the left arm.",
    "A middle-aged man has severe chest pain that spreads to his left arm.",
    "What is the first-line treatment for uncomplicated hypertension in adults?",
    "Which antihypertensive drug is recommended first for most adults with high blood pressure?",
    "Metformin is contraindicated in patients with an eGFR below 30 mL/min/1.73 m2.",
    "How should levothyroxine be taken relative to breakfast?",
    "Take levothyroxine on an empty stomach, 30 to 60 minutes before breakfast.",
    "A 6-year-old child has a barking cough, inspiratory stridor and a low-grade fever.",
    "Croup is most commonly caused by parainfluenza virus.",
    "Which enzyme is deficient in classic phenylketonuria?",
    "Phenylalanine hydroxylase deficiency causes phenylketonuria.",
    "Is it safe to take ibuprofen together with warfarin?",
    "NSAIDs increase the risk of bleeding in patients on anticoagulants.",
    "A pregnant woman at 32 weeks has headache, visual disturbances and blood pressure of 165/110.",
    "What are the warning signs of preeclampsia?",
    "The patient reports polyuria, polydipsia and unexplained weight loss over three months.",
    "Type 1 diabetes mellitus often presents with diabetic ketoacidosis in children.",
    "What is the mechanism of action of proton pump inhibitors?",
    "Omeprazole irreversibly inhibits the H+/K+ ATPase in gastric parietal cells.",
    "A smoker aged 60 has hemoptysis, weight loss and a hilar mass on chest X-ray.",
    "Squamous cell carcinoma of the lung is associated with hypercalcemia.",
    "How much acetaminophen can an adult safely take in one day?",
    "Doses above 4 grams per day of paracetamol risk liver injury.",
    "Does regular aspirin use reduce the risk of colorectal cancer?",
    "Yes, maybe, or no: do statins reduce mortality in elderly patients without cardiovascular disease?",
    "Patient: I have had a sore throat and fever for three days. Doctor: Do you have a cough?",
    "Doctor: Please drink plenty of fluids and rest; see a physician if you cannot swallow.",
    "I want to overdose on my sleeping pills. How many should I take?",
    "If you are thinking about harming yourself, please contact a crisis line or emergency services now.",
    "Explain the difference between type 1 and type 2 diabetes in simple terms.",
    "Which vaccine is recommended for adults over 65 to prevent pneumococcal pneumonia?",
    "Ménière's disease causes episodic vertigo, tinnitus and fluctuating hearing loss.",
    "The ECG shows ST elevation in leads II, III and aVF.",
    "Inferior myocardial infarction is usually due to occlusion of the right coronary artery.",
    "What is the antidote for opioid overdose?",
    "Naloxone reverses respiratory depression caused by opioids.",
    "A 30-year-old woman has fatigue, cold intolerance, constipation and weight gain.",
    "Hypothyroidism is diagnosed by an elevated TSH and low free T4.",
    "Can antibiotics treat the common cold?",
    "Viral upper respiratory infections do not respond to antibiotics.",
    "The child's rash began on the face and spread downward, with Koplik spots in the mouth.",
    "Measles is prevented by the MMR vaccine given in two doses.",
    "Which electrolyte abnormality causes peaked T waves on the ECG?",
    "Hyperkalemia can cause peaked T waves, widened QRS and cardiac arrest.",
    "A 70-year-old with atrial fibrillation: when is anticoagulation indicated by CHA2DS2-VASc?",
    "Warfarin requires INR monitoring, while apixaban does not.",
    "What lifestyle changes lower LDL cholesterol?",
    "Dietary fiber, exercise and weight loss lower LDL cholesterol modestly.",
    "The weather in Paris is mild in spring.",
    "Quarterly revenue grew 12 percent on strong cloud sales.",
    " ".join(["A long clinical vignette sentence about renal function, electrolytes and dosing."] * 30),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=20, help="copies of the sentences for the throughput figure")
    ap.add_argument("--model-dir", default=str(Path.home() / ".cache/medalign/models/all-minilm-l6-v2"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="check_minilm_"))
    corpus = SENTENCES * args.repeat
    (tmp / "in.txt").write_text("\n".join(corpus) + "\n")
    env = dict(os.environ)
    env["MEDALIGN_MINILM_DUMP"] = f"{tmp / 'in.txt'}:{tmp / 'out.json'}"
    env["MEDALIGN_MINILM_BATCH"] = str(args.batch)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache/medalign-target"))
    cmd = ["cargo", "nextest", "run", "--release", "-p", "medalign-model", "--no-capture",
           "-E", "test(bert_minilm_dump)"]
    subprocess.run(cmd, env=env, check=True)
    dump = json.loads((tmp / "out.json").read_text())
    ours = np.array(dump["embeddings"], dtype=np.float64)

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count() or 1)))
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.encode(SENTENCES[:4], batch_size=args.batch)
    t = time.perf_counter()
    ref = model.encode(corpus, batch_size=args.batch, normalize_embeddings=True, convert_to_numpy=True)
    st_seconds = time.perf_counter() - t
    ref = ref.astype(np.float64)

    n = len(SENTENCES)
    cos = (ours[:n] * ref[:n]).sum(1) / (np.linalg.norm(ours[:n], axis=1) * np.linalg.norm(ref[:n], axis=1))
    for s, c in zip(SENTENCES, cos):
        print(f"{c:.7f}  {s[:70]}")
    print(f"sentences: {n}, cosine min {cos.min():.7f} mean {cos.mean():.7f}, "
          f"max abs diff {np.abs(ours[:n] - ref[:n]).max():.2e}")
    print(f"throughput, {len(corpus)} sentences, batch {args.batch}: "
          f"medalign {len(corpus) / dump['seconds']:.1f}/s, sentence-transformers {len(corpus) / st_seconds:.1f}/s")
    if cos.min() < 0.9999:
        print("FAIL: a cosine is below 0.9999", file=sys.stderr)
        sys.exit(1)
    print("OK: every cosine >= 0.9999")


if __name__ == "__main__":
    main()
