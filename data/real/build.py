#!/usr/bin/env python3
# Builds data/real/: real public medical data with train/test splits that never overlap.
#
# Reads (paths are arguments; nothing is hard-coded):
#   --public DIR    a folder holding the public files in their original layout:
#                   medsafetybench/train/{gpt4,llama2}/med_safety_demonstrations_category_{1..9}.csv
#                   (+ LICENSE), pubmedqa/pqal_train_pool.json (+ LICENSE),
#                   mmlu_medical/{dev,val}/<subject>_{dev,val}.csv (+ LICENSE)
#   --medquad PATH  a clone or bare git mirror of github.com/abachaa/MedQuAD
#                   (a bare mirror is read with `git archive <commit>`)
#   --commit HASH   the MedQuAD commit to read (default: the one recorded below)
#   --out DIR       where to write (default: the folder this script is in)
#
# Writes, per source, train/ and test/ folders in the source's original format (MMLU keeps its
# dev/ and val/ folders: dev is few-shot, val is held out), the licence texts, and prints the
# row counts and the train/test overlap checks (normalized exact match and 13-gram overlap).
# Standard library only; deterministic for a given input and SEED (Python >= 3.8).
#
#   python3 data/real/build.py --public /path/to/public/data --medquad /path/to/MedQuAD
#
# What it changes is described in data/README.md ("Real data").

import argparse
import csv
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict

SEED = 20241207
MEDQUAD_COMMIT = "577bd37b96c02d1833b2c9eed2de9f96964e96cb"
MEDQUAD_URL = "https://github.com/abachaa/MedQuAD"
NGRAM = 13

MSB_TEST = 225          # MedSafetyBench harmful requests held out (of 900), stratified by generator x category
PUBMEDQA_TEST = 200     # PubMedQA PQA-L pool items held out (of 500), stratified by final_decision
MEDQUAD_TEST = 250      # MedQuAD pairs held out, whole question foci at a time
MEDQUAD_TOTAL = 2300    # MedQuAD pairs kept in all
ANSWER_MAX = 600        # characters; answers are cut at a sentence boundary at or below this
ANSWER_MIN = 100        # shorter cleaned answers are dropped

# MedQuAD subsets with answers (the three MedlinePlus subsets with answers removed are not read;
# GHR's genetics pages are left out: their treatment answers are lists of links).
MEDQUAD_SUBSETS = [
    "4_MPlus_Health_Topics_QA", "5_NIDDK_QA", "7_SeniorHealth_QA", "8_NHLBI_QA_XML",
    "9_CDC_QA", "6_NINDS_QA", "1_CancerGov_QA", "2_GARD_QA",
]
# Consumer question types kept; treatment first.
MEDQUAD_QTYPES = [
    "treatment", "information", "symptoms", "causes", "prevention", "exams and tests",
    "complications", "considerations", "outlook", "susceptibility", "side effects",
]
GARD_TREATMENT_MAX = 200  # GARD (rare diseases) would otherwise dominate the treatment questions


# ---------------------------------------------------------------- overlap checks

def tokens(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def norm(text):
    return " ".join(tokens(text))


def grams(text, n=NGRAM):
    """The text's word n-grams; a text shorter than n words counts as one gram (its whole self)."""
    t = tokens(text)
    if len(t) < n:
        return {tuple(t)} if t else set()
    return {tuple(t[i:i + n]) for i in range(len(t) - n + 1)}


def overlap(train_texts, test_texts):
    """(test texts equal to a train text after normalization, test texts sharing a 13-gram with one)."""
    train_norm = {norm(t) for t in train_texts}
    train_grams = set()
    for t in train_texts:
        train_grams |= grams(t)
    exact = sum(norm(t) in train_norm for t in test_texts)
    shared = sum(bool(grams(t) & train_grams) for t in test_texts)
    return exact, shared


def clusters(texts):
    """Union-find over items whose texts are equal after normalization or share a 13-gram."""
    parent = list(range(len(texts)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = {}
    for i, t in enumerate(texts):
        for g in grams(t) | {("=",) + tuple(tokens(t))}:
            if g in owner:
                parent[find(i)] = find(owner[g])
            else:
                owner[g] = i
    groups = defaultdict(list)
    for i in range(len(texts)):
        groups[find(i)].append(i)
    return list(groups.values())


def split_groups(groups, stratum_of, quotas, rng):
    """Picks whole groups for test until each stratum's quota is met; the rest is train.

    groups: lists of item indices that must stay together. A group counts toward the stratum of
    its first item and is skipped if it would overshoot that stratum's quota."""
    order = sorted(groups, key=lambda g: min(g))
    rng.shuffle(order)
    need = dict(quotas)
    test = set()
    for g in order:
        s = stratum_of(g[0])
        if need.get(s, 0) >= len(g):
            need[s] -= len(g)
            test.update(g)
    short = {s: n for s, n in need.items() if n}
    if short:
        sys.exit(f"could not fill test quotas: {short}")
    return test


def quotas_for(counts, total_test):
    """Proportional per-stratum quotas summing to total_test (largest remainder)."""
    n = sum(counts.values())
    exact = {s: c * total_test / n for s, c in counts.items()}
    q = {s: int(v) for s, v in exact.items()}
    rest = total_test - sum(q.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - q[s]), s))[:rest]:
        q[s] += 1
    return q


# ---------------------------------------------------------------- sources

def copy_licence(src_dir, dst_dir):
    os.makedirs(dst_dir, exist_ok=True)
    shutil.copyfile(os.path.join(src_dir, "LICENSE"), os.path.join(dst_dir, "LICENSE"))


def medsafetybench(public, out, rng, report):
    src = os.path.join(public, "medsafetybench")
    dst = os.path.join(out, "medsafetybench")
    copy_licence(src, dst)
    header, items = None, []  # (generator, file name, row)
    for gen in sorted(os.listdir(os.path.join(src, "train"))):
        for name in sorted(os.listdir(os.path.join(src, "train", gen))):
            with open(os.path.join(src, "train", gen, name), newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            header = rows[0]
            items += [(gen, name, r) for r in rows[1:]]
    strata = [(gen, name) for gen, name, _ in items]
    quotas = quotas_for(Counter(strata), MSB_TEST)
    test = split_groups(clusters([r[1] for _, _, r in items]), lambda i: strata[i], quotas, rng)
    for split in ("train", "test"):
        for gen, name in sorted(set(strata)):
            rows = [r for i, (g, n, r) in enumerate(items) if (g, n) == (gen, name) and (i in test) == (split == "test")]
            path = os.path.join(dst, split, gen, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows)
    train = [r[1] for i, (_, _, r) in enumerate(items) if i not in test]
    held = [r[1] for i, (_, _, r) in enumerate(items) if i in test]
    per_cat = Counter(name.rsplit("_", 1)[1].split(".")[0] for i, (_, name, _) in enumerate(items) if i in test)
    report["medsafetybench"] = {
        "train": len(train), "test": len(held),
        "test per category": dict(sorted(per_cat.items(), key=lambda kv: int(kv[0]))),
        "overlap request (exact, 13-gram)": overlap(train, held),
    }
    return train, held


def pubmedqa(public, out, rng, report):
    src = os.path.join(public, "pubmedqa")
    dst = os.path.join(out, "pubmedqa")
    copy_licence(src, dst)
    with open(os.path.join(src, "pqal_train_pool.json"), encoding="utf-8") as f:
        pool = json.load(f)
    pmids = list(pool)
    strata = [pool[p]["final_decision"] for p in pmids]
    quotas = quotas_for(Counter(strata), PUBMEDQA_TEST)
    test = split_groups(clusters([pool[p]["QUESTION"] for p in pmids]), lambda i: strata[i], quotas, rng)
    for split, name in (("train", "pqal_train.json"), ("test", "pqal_test.json")):
        part = {p: pool[p] for i, p in enumerate(pmids) if (i in test) == (split == "test")}
        os.makedirs(os.path.join(dst, split), exist_ok=True)
        with open(os.path.join(dst, split, name), "w", encoding="utf-8") as f:
            json.dump(part, f, indent=1, ensure_ascii=False)
    q_train = [pool[p]["QUESTION"] for i, p in enumerate(pmids) if i not in test]
    q_test = [pool[p]["QUESTION"] for i, p in enumerate(pmids) if i in test]
    c_train = [" ".join(pool[p]["CONTEXTS"]) for i, p in enumerate(pmids) if i not in test]
    c_test = [" ".join(pool[p]["CONTEXTS"]) for i, p in enumerate(pmids) if i in test]
    report["pubmedqa"] = {
        "train": len(q_train), "test": len(q_test),
        "test per decision": dict(Counter(s for i, s in enumerate(strata) if i in test)),
        "overlap question (exact, 13-gram)": overlap(q_train, q_test),
        "overlap contexts (exact, 13-gram)": overlap(c_train, c_test),
    }
    return q_train, q_test


def mmlu(public, out, report):
    src = os.path.join(public, "mmlu_medical")
    dst = os.path.join(out, "mmlu_medical")
    copy_licence(src, dst)
    questions = {}
    for split in ("dev", "val"):
        os.makedirs(os.path.join(dst, split), exist_ok=True)
        questions[split] = []
        for name in sorted(os.listdir(os.path.join(src, split))):
            shutil.copyfile(os.path.join(src, split, name), os.path.join(dst, split, name))
            with open(os.path.join(src, split, name), newline="", encoding="utf-8") as f:
                questions[split] += [r[0] for r in csv.reader(f)]
    report["mmlu_medical"] = {
        "dev": len(questions["dev"]), "val (held out)": len(questions["val"]),
        "overlap dev/val question (exact, 13-gram)": overlap(questions["dev"], questions["val"]),
    }
    return questions["dev"], questions["val"]


def medquad_tree(path, commit):
    """A folder with the MedQuAD files at `commit`: the path itself if it is a checkout, else a
    temporary `git archive` of the bare mirror."""
    if os.path.isdir(os.path.join(path, "2_GARD_QA")):
        return path, None
    tmp = tempfile.mkdtemp(prefix="medquad-")
    data = subprocess.run(["git", "--git-dir", path, "archive", commit], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp)
    return tmp, tmp


SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def shorten(text):
    """The text whole if short enough, else cut at its last sentence end at or before ANSWER_MAX
    characters ('' if none)."""
    if len(text) <= ANSWER_MAX and (SENTENCE_END.search(text[-1:] or " ") or text.split("\n")[-1].startswith("- ")):
        return text  # whole, ending with a sentence or a list item
    ends = [m.end() for m in SENTENCE_END.finditer(text[:ANSWER_MAX + 1])]
    return text[:ends[-1]].rstrip() if ends else ""


# Sentences that point elsewhere (a video, a web site, a reading list) instead of answering.
POINTER = re.compile(r"\b(click|www\.|https?://|Pronunciation Guide|publications are available|see the NIDDK|"
                     r"For more information|More information about)", re.I)
# A reading list follows: the rest of the answer goes.
READING_LIST = re.compile(r"\b(Additional articles|can be accessed below|articles? (are|is) listed below|"
                          r"the following (articles|resources|links))", re.I)


def drop_pointers(paras):
    out = []
    for p in paras:
        lines = []
        for line in p.split("\n"):
            kept = []
            for sent in re.split(r"(?<=[.!?])\s+", line):
                if READING_LIST.search(sent):
                    if kept:
                        lines.append(" ".join(kept))
                    if lines:
                        out.append("\n".join(lines))
                    return out
                if not POINTER.search(sent):
                    kept.append(sent)
            if kept and kept != ["-"]:
                lines.append(" ".join(kept))
        if lines:
            out.append("\n".join(lines))
    return out


def clean_answer(raw):
    """First paragraph(s) of a MedQuAD answer, whitespace-normalized, at most ANSWER_MAX characters."""
    paras = []
    for p in re.split(r"\n\s*\n", raw.strip()):
        p = re.sub(r"\s*\n\s*", " ", p.strip())
        p = re.sub(r"^Summary\s*:\s*", "", p)
        p = re.sub(r"\s{2,}-\s+", "\n- ", p)       # inline bullet lists become lines
        p = re.sub(r"^-\s+", "- ", p)
        p = re.sub(r"[ \t]{2,}", " ", p).strip()
        if not p or p.startswith("Key Points") or p.startswith("More on:"):
            continue
        # A short line without end punctuation: an item if it follows a colon or another item
        # (NHLBI's one-line lists), else a section heading, dropped.
        if len(p) < 100 and not p.startswith("- ") and not re.search(r"[.!?:]$", p):
            if paras and (paras[-1].endswith(":") or paras[-1].split("\n")[-1].startswith("- ")):
                paras[-1] += "\n- " + p
            continue
        paras.append(p)
    if not paras:
        return ""
    # GARD answers open by repeating the question ("How might X be treated? ...").
    m = re.match(r"^[^.!?]{0,200}\?\s*", paras[0])
    if m:
        paras[0] = paras[0][m.end():].strip()
        if not paras[0]:
            paras.pop(0)
    paras = drop_pointers(paras)
    text = ""
    for p in paras:  # the first paragraph, plus following ones while short
        joined = (text + ("\n" if p.startswith("- ") else "\n\n") + p) if text else p
        if text and len(joined) > ANSWER_MAX:
            break
        text = joined
        if len(text) >= 200 and SENTENCE_END.search(text[-1]):
            break
    text = shorten(text)
    return text if len(text) >= ANSWER_MIN else ""


def medquad(medquad_path, commit, out, rng, report):
    root, tmp = medquad_tree(medquad_path, commit)
    dst = os.path.join(out, "medquad")
    os.makedirs(dst, exist_ok=True)
    shutil.copyfile(os.path.join(root, "LICENSE.txt"), os.path.join(dst, "LICENSE"))
    cands = []
    for subset in MEDQUAD_SUBSETS:
        folder = os.path.join(root, subset)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".xml"):
                continue
            doc = ET.parse(os.path.join(folder, name)).getroot()
            focus = " ".join((doc.findtext("Focus") or "").split())
            for pair in doc.iter("QAPair"):
                q = pair.find("Question")
                qtype = q.get("qtype")
                question = " ".join((q.text or "").split())
                question = re.sub(r"(\s*\?)+$", "?", question)  # "What is X ?" and "Who is at risk for X? ?"
                answer = clean_answer(pair.findtext("Answer") or "")
                if qtype not in MEDQUAD_QTYPES or not question or not answer or not focus:
                    continue
                cands.append({"question": question, "answer": answer, "focus": focus, "qtype": qtype,
                              "source": f"MedQuAD/{subset}", "url": doc.get("url") or ""})
    if tmp:
        shutil.rmtree(tmp)
    # Treatment questions first (GARD's capped), then a seeded sample of the rest.
    treat = [c for c in cands if c["qtype"] == "treatment" and "GARD" not in c["source"]]
    gard = [c for c in cands if c["qtype"] == "treatment" and "GARD" in c["source"]]
    rng.shuffle(gard)
    other = [c for c in cands if c["qtype"] != "treatment" and "GARD" not in c["source"]]
    rng.shuffle(other)
    rows, seen_q, seen_a = [], set(), set()
    for c in treat + gard[:GARD_TREATMENT_MAX] + other:
        if len(rows) == MEDQUAD_TOTAL:
            break
        nq, na = norm(c["question"]), norm(c["answer"])
        if nq in seen_q or na in seen_a:  # exact duplicate questions (and answers) once
            continue
        seen_q.add(nq)
        seen_a.add(na)
        rows.append(c)
    # Hold out whole foci; items whose questions or answers share a 13-gram stay on one side.
    focus_of = [norm(r["focus"]) for r in rows]
    texts = [r["question"] + " \n " + r["answer"] for r in rows]
    parent = {}
    for g in clusters(texts):
        for i in g:
            parent[i] = g[0]
    by_focus = defaultdict(set)
    for i, f in enumerate(focus_of):
        by_focus[f].add(parent[i])
    # Merge text clusters that share a focus.
    merged = clusters_from_links(len(rows), [(i, parent[i]) for i in range(len(rows))] +
                                 [(a, b) for s in by_focus.values() for a in s for b in s])
    test = split_groups(merged, lambda i: "all", {"all": MEDQUAD_TEST}, rng)
    for split in ("train", "test"):
        part = [r for i, r in enumerate(rows) if (i in test) == (split == "test")]
        os.makedirs(os.path.join(dst, split), exist_ok=True)
        with open(os.path.join(dst, split, f"medquad_{split}.jsonl"), "w", encoding="utf-8") as f:
            for r in part:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tr = [r for i, r in enumerate(rows) if i not in test]
    te = [r for i, r in enumerate(rows) if i in test]
    report["medquad"] = {
        "candidates": len(cands), "kept": len(rows), "train": len(tr), "test": len(te),
        "qtypes": dict(Counter(r["qtype"] for r in rows).most_common()),
        "subsets": dict(Counter(r["source"] for r in rows).most_common()),
        "overlap question (exact, 13-gram)": overlap([r["question"] for r in tr], [r["question"] for r in te]),
        "overlap answer (exact, 13-gram)": overlap([r["answer"] for r in tr], [r["answer"] for r in te]),
        "test foci also in train": len({norm(r["focus"]) for r in te} & {norm(r["focus"]) for r in tr}),
    }
    return [r["question"] for r in tr], [r["question"] for r in te]


def clusters_from_links(n, links):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        parent[find(a)] = find(b)
    groups = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return list(groups.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--public", required=True)
    ap.add_argument("--medquad", required=True)
    ap.add_argument("--commit", default=MEDQUAD_COMMIT)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    report = {}
    # One generator per source, each seeded with SEED, so that sources do not shift each other.
    msb = medsafetybench(a.public, a.out, random.Random(SEED), report)
    pmq = pubmedqa(a.public, a.out, random.Random(SEED), report)
    mml = mmlu(a.public, a.out, report)
    mqd = medquad(a.medquad, a.commit, a.out, random.Random(SEED), report)
    # Cross-source: every held-out question against every source's training-side questions.
    train_all = msb[0] + pmq[0] + mqd[0] + mml[0]
    report["cross-source: held-out questions vs all training-side questions (exact, 13-gram)"] = {
        "medsafetybench test": overlap(train_all, msb[1]),
        "pubmedqa test": overlap(train_all, pmq[1]),
        "medquad test": overlap(train_all, mqd[1]),
        "mmlu val": overlap(train_all, mml[1]),
    }
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
