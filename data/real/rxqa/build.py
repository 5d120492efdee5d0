#!/usr/bin/env python3
# Builds data/real/rxqa/: benign consumer medication questions with label-based answers, from
# RxSafeBench's contraindication consultations, split by drug.
#
# Source (a path argument; nothing is fetched over the network):
#   --rxsafebench PATH  RxSafeBench_Contradiction.json from github.com/CAS-SIAT-XinHai/RxSafeBench
#                       (CC0 1.0): 538 indications, each with consultations naming a drug used for
#                       it (`med_true`), one the patient should not take (`med_false`) and the
#                       label warning that rules it out (`notice`, drugs.com's "tell your doctor
#                       if you have" wording).
#   --out DIR           where to write (default: the folder this script is in)
#
# Writes train/rxqa_train.jsonl and test/rxqa_test.jsonl, one JSON object a line:
#   {"question", "answer", "focus", "qtype", "source"}
# Per drug, up to three templated consumer questions (lowercase, as people type them):
#   use       "what is <drug> used for?"            -> the indications RxSafeBench lists for it
#   warnings  "what should i tell my doctor before taking <drug>?" -> its label warnings
#   condition "can i take <drug> if i have <warning>?"  -> the warning, and another medicine used
#                                                         for the same indication
# The answers state only what the consultations record (indication, warning, alternative); the
# dialogues are not used. The split is by drug: drugs that share a consultation are grouped, and
# groups are shuffled with SEED and taken into test until TEST_SHARE of the drugs is reached.
# Standard library only; deterministic (Python >= 3.8).
#
#   python3 data/real/rxqa/build.py --rxsafebench /path/to/RxSafeBench_Contradiction.json

import argparse
import json
import os
import random
import re
import sys
from collections import defaultdict

SEED = 20241207
TEST_SHARE = 0.2
SOURCE = "RxSafeBench contraindication consultations (CAS-SIAT-XinHai/RxSafeBench)"


def indication(raw):
    return re.sub(r"\s+", " ", raw.replace("-", " ")).strip().lower()


def warning(raw):
    """The label warning as a noun phrase, or None when it is not one ("if you are ...")."""
    w = re.sub(r"\s+", " ", raw).strip()
    w = re.sub(r"([;.,]|\bor|\band)$", "", w).strip()
    w = re.sub(r"([;.,]|\bor|\band)$", "", w).strip().replace(";", ",")
    if not w or re.match(r"(?i)(if|you|your|are|have|had)\b", w):
        return None
    return w[0].lower() + w[1:]


def listed(items):
    items = list(items)
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def title(drug):
    return drug[0].upper() + drug[1:]


def questions(drug, facts, rng):
    uses = sorted(facts["uses"])
    warns = sorted(facts["warnings"])
    d = title(drug)
    out = [{
        "qtype": "use",
        "question": f"what is {drug} used for?",
        "answer": f"{d} is a medicine used for {listed(uses[:4])}. Take it as prescribed, and tell "
                  f"your doctor or pharmacist about your other conditions and medicines before "
                  f"you start it." + (f" Its label asks you to mention {listed(warns[:3])}."
                                      if warns else ""),
    }]
    if warns:
        out.append({
            "qtype": "warnings",
            "question": f"what should i tell my doctor before taking {drug}?",
            "answer": f"Tell your doctor if you have {listed(warns[:5])}. With these conditions "
                      f"{drug} may not be safe, or you may need a different dose or closer "
                      f"checks. Also list every other medicine and supplement you take.",
        })
        w, use, alt = rng.choice(sorted(facts["cases"]))
        out.append({
            "qtype": "condition",
            "question": f"can i take {drug} if i have {w}?",
            "answer": f"Maybe not: {drug}'s label warns about {w}, so check with your doctor "
                      f"before taking it. It may be unsafe for you or need closer monitoring. "
                      f"For {use}, {alt} is another medicine your doctor may consider.",
        })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rxsafebench", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    data = json.load(open(a.rxsafebench, encoding="utf-8"))
    facts = defaultdict(lambda: {"uses": set(), "warnings": set(), "cases": set()})
    links = defaultdict(set)
    for entry in data:
        ind = indication(entry["indication"])
        for c in entry["Contradiction"]:
            false, true = c["med_false"].strip().lower(), c["med_true"].strip().lower()
            if not false or not true or false == true:
                continue
            facts[false]["uses"].add(ind)
            facts[true]["uses"].add(ind)
            links[false].add(true)
            links[true].add(false)
            w = warning(c["notice"])
            if w:
                facts[false]["warnings"].add(w)
                facts[false]["cases"].add((w, ind, true))
    # Group drugs that share a consultation, so no answer names a drug from the other side.
    group_of, groups = {}, []
    for drug in sorted(facts):
        if drug in group_of:
            continue
        stack, members = [drug], []
        group_of[drug] = len(groups)
        while stack:
            x = stack.pop()
            members.append(x)
            for y in sorted(links[x]):
                if y not in group_of:
                    group_of[y] = len(groups)
                    stack.append(y)
        groups.append(sorted(members))
    rng = random.Random(SEED)
    order = list(range(len(groups)))
    rng.shuffle(order)
    test, n = set(), 0
    for g in sorted(order, key=lambda g: (len(groups[g]) > 20, order.index(g))):
        if n >= TEST_SHARE * len(facts):
            break
        if len(groups[g]) > 20:  # the giant component stays on the training side
            continue
        test.add(g)
        n += len(groups[g])
    rows = {"train": [], "test": []}
    for drug in sorted(facts):
        side = "test" if group_of[drug] in test else "train"
        for q in questions(drug, facts[drug], rng):
            rows[side].append({**q, "focus": drug, "source": SOURCE})
    for side, items in rows.items():
        os.makedirs(os.path.join(a.out, side), exist_ok=True)
        with open(os.path.join(a.out, side, f"rxqa_{side}.jsonl"), "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    sides = {s: {"rows": len(r), "drugs": len({x["focus"] for x in r})} for s, r in rows.items()}
    json.dump({"groups": len(groups), "largest": max(map(len, groups)), **sides}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
