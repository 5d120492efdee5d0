#!/usr/bin/env python3
# Builds data/real/medquad_drugs/: consumer medication questions without answers (prompts), from
# MedQuAD's MedlinePlus drug and herb/supplement subsets, split by drug.
#
# Source (a path argument; nothing is fetched over the network):
#   --medquad PATH  a clone or bare git mirror of github.com/abachaa/MedQuAD (CC BY 4.0), read at
#                   MEDQUAD_COMMIT: 11_MPlusDrugs_QA/ and 12_MPlusHerbsSupplements_QA/. MedQuAD
#                   removed these subsets' answers (MedlinePlus copyright) and kept the questions.
#   --out DIR       where to write (default: the folder this script is in)
#
# Writes train/medquad_drugs_train.jsonl and test/medquad_drugs_test.jsonl, one JSON object a line:
#   {"question", "focus", "qtype", "source", "url"}
# The question as MedQuAD has it (whitespace normalized, " ?" -> "?"). These are prompts only: a
# pipeline asks its own model and keeps the answers the rules accept (an answer, not a refusal).
# Split by drug: foci shuffled with SEED, TEST_SHARE of them held out; then a seeded sample of
# KEEP rows of each side (of 10,881 and 2,755 distinct questions).
# Standard library only; deterministic (Python >= 3.8).
#
#   python3 data/real/medquad_drugs/build.py --medquad /path/to/MedQuAD

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

SEED = 20241207
TEST_SHARE = 0.2
KEEP = {"train": 2400, "test": 600}  # a seeded sample of each side, kept in file order
MEDQUAD_COMMIT = "577bd37b96c02d1833b2c9eed2de9f96964e96cb"
SUBSETS = ["11_MPlusDrugs_QA", "12_MPlusHerbsSupplements_QA"]


def documents(path):
    """(name, xml bytes) of every document of SUBSETS at MEDQUAD_COMMIT, from a clone or a bare mirror."""
    tar = subprocess.run(
        ["git", "-C", path, "archive", "--format=tar", MEDQUAD_COMMIT, *SUBSETS],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if m.isfile() and m.name.endswith(".xml"):
                yield m.name, t.extractfile(m).read()


def clean(text):
    text = re.sub(r"\s+", " ", text or "").strip()
    return re.sub(r"\s+\?$", "?", text)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--medquad", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    by_focus = {}
    for name, xml in documents(a.medquad):
        doc = ET.fromstring(xml)
        focus = clean(doc.findtext("Focus")).lower()
        if not focus:
            continue
        subset = name.split("/")[0]
        for q in doc.iter("Question"):
            text = clean(q.text)
            if text:
                by_focus.setdefault(focus, []).append({
                    "question": text,
                    "focus": focus,
                    "qtype": q.get("qtype", ""),
                    "source": f"MedQuAD {subset}",
                    "url": doc.get("url", ""),
                })
    foci = sorted(by_focus)
    random.Random(SEED).shuffle(foci)
    test = set(foci[: round(TEST_SHARE * len(foci))])
    seen, rows = set(), {"train": [], "test": []}
    for focus in sorted(by_focus):
        for r in by_focus[focus]:
            if r["question"].lower() not in seen:
                seen.add(r["question"].lower())
                rows["test" if focus in test else "train"].append(r)
    rng = random.Random(SEED)
    for side, items in rows.items():
        keep = set(rng.sample(range(len(items)), min(KEEP[side], len(items))))
        rows[side] = [r for i, r in enumerate(items) if i in keep]
    for side, items in rows.items():
        os.makedirs(os.path.join(a.out, side), exist_ok=True)
        with open(os.path.join(a.out, side, f"medquad_drugs_{side}.jsonl"), "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    json.dump({s: {"rows": len(r), "foci": len({x["focus"] for x in r})} for s, r in rows.items()},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
