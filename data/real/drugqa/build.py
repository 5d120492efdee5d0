#!/usr/bin/env python3
# Builds data/real/drugqa/: consumer medication questions with answers, split by drug.
#
# Two public sources (paths are arguments; nothing is fetched over the network):
#   --kqa PATH     a clone or bare git mirror of github.com/Itaymanes/K-QA (MIT licence), read at
#                  KQA_COMMIT, file dataset/questions_w_answers.jsonl; or that .jsonl file itself.
#                  Real patient questions from the K Health app with physician-written answers.
#   --labels PATH  a clone or bare git mirror of github.com/KevinKingslin/medical-reviewer, read at
#                  LABELS_COMMIT, file data/drug_labels.json; or that .json file itself. A cache of
#                  the `adverse_reactions` section (first 2,500 characters) of openFDA drug labels
#                  (US FDA labelling text; openFDA data is public domain / CC0).
#   --out DIR      where to write (default: the folder this script is in)
#
# Writes train/drugqa_train.jsonl and test/drugqa_test.jsonl, one JSON object a line:
#   {"question", "answer", "focus", "source", "url"}
# K-QA rows: only questions that name a medicine or a medicine class (a fixed lexicon below);
# question kept as asked, answer = the physician's free-form answer cut to <= 600 characters at a
# sentence boundary. openFDA rows: one templated consumer question per drug ("what are the most
# common side effects of X?"), answer = the label's "most common adverse reactions" sentence(s),
# with cross-references ("[see ...]", "( 6.1 )") removed, cut to <= 600 characters at a sentence
# boundary. Rows whose answer would be under 100 characters, or whose first sentence is over 600,
# are dropped. The split is by drug: drugs that occur together in a question are grouped, groups
# are shuffled with SEED and taken into test until TEST_SHARE of the rows is reached.
# Standard library only; deterministic (Python >= 3.8).
#
#   python3 data/real/drugqa/build.py --kqa /path/to/K-QA --labels /path/to/medical-reviewer

import argparse
import json
import os
import random
import re
import subprocess
import sys

SEED = 20241207
TEST_SHARE = 0.30
TEST_MAX = 250
MIN_CHARS, MAX_CHARS = 100, 600

KQA_COMMIT = "ef403d012e199fcfa0d8c02b38a96ff95164f4d0"
KQA_PATH = "dataset/questions_w_answers.jsonl"
KQA_URL = "https://github.com/Itaymanes/K-QA"
LABELS_COMMIT = "c89cc096c5c571f5e13138ef6d41f13a39de7238"
LABELS_PATH = "data/drug_labels.json"
LABELS_URL = "https://github.com/KevinKingslin/medical-reviewer"
OPENFDA_QUERY = "https://api.fda.gov/drug/label.json?search=openfda.brand_name:%22{}%22&limit=1"

# Surface forms (regex, case-insensitive, whole words) in K-QA questions -> canonical focus.
# Misspellings are those found in the questions. Brand names map to the generic name.
KQA_LEXICON = [
    (r"lexapro|escitalopram", "escitalopram"),
    (r"saxenda|liraglutide", "liraglutide"),
    (r"ozempic|semaglutide", "semaglutide"),
    (r"mounjaro|tirzepatide", "tirzepatide"),
    (r"activated charcoal", "activated charcoal"),
    (r"lutein", "lutein"),
    (r"omega 3|omega-3", "omega-3 fatty acids"),
    (r"robaxin|methocarbamol", "methocarbamol"),
    (r"buspirone|buspar", "buspirone"),
    (r"imodium|loperamide", "loperamide"),
    (r"benadryl|benedryl|diphenhydramine", "diphenhydramine"),
    (r"claritin|loratadine", "loratadine"),
    (r"zyrtec|cetirizine", "cetirizine"),
    (r"colchicine", "colchicine"),
    (r"clindamyam|clindamycin", "clindamycin"),
    (r"nyquil", "nyquil"),
    (r"pepto bismol|peptobismol|pepto", "bismuth subsalicylate"),
    (r"tylenol|acetaminophen|paracetamol", "acetaminophen"),
    (r"dramamine|dimenhydrinate", "dimenhydrinate"),
    (r"clobetasol", "clobetasol"),
    (r"sertraline|zoloft", "sertraline"),
    (r"allopurinal|allopurinol", "allopurinol"),
    (r"hydroxyzine", "hydroxyzine"),
    (r"metformin", "metformin"),
    (r"gabapentin", "gabapentin"),
    (r"naproxen", "naproxen"),
    (r"ibruprofen|ibuprofen|advil|motrin", "ibuprofen"),
    (r"wellbutrin|bupropion", "bupropion"),
    (r"melatonin", "melatonin"),
    (r"lisinopril", "lisinopril"),
    (r"hydrocortisone", "hydrocortisone"),
    (r"trazodone", "trazodone"),
    (r"metrogel|metronidazole", "metronidazole"),
    (r"prozac|fluoxetine", "fluoxetine"),
    (r"abreva|docosanol", "docosanol"),
    (r"tinactin|tolnaftate", "tolnaftate"),
    (r"augmentin|amoxcicilin|amoxicillin", "amoxicillin"),
    (r"valtrex|valacyclovir", "valacyclovir"),
    (r"acyclovir|aciclovir", "acyclovir"),
    (r"accutane|isotretinoin", "isotretinoin"),
    (r"meloxicam", "meloxicam"),
    (r"mycofenolate|mycophenolate", "mycophenolate"),
    (r"pyridium|phenazopyridine", "phenazopyridine"),
    (r"miconazole", "miconazole"),
    (r"cymbalta|duloxetine", "duloxetine"),
    (r"minoxidil", "minoxidil"),
    (r"zofran|ondansetron", "ondansetron"),
    (r"fioricet", "butalbital/acetaminophen/caffeine"),
    (r"bactrim", "sulfamethoxazole/trimethoprim"),
    (r"prednisone", "prednisone"),
    (r"flonase|fluticasone", "fluticasone"),
    (r"singulair|montelukast", "montelukast"),
    (r"ambien|ambient|zolpidem", "zolpidem"),
    (r"diflucan|fluconazole", "fluconazole"),
    (r"cefdinir", "cefdinir"),
    (r"chlorhexidine", "chlorhexidine"),
    (r"keflex|cephalexin", "cephalexin"),
    (r"losartan", "losartan"),
    (r"omeprazole", "omeprazole"),
    (r"proton pump inhibitor", "proton pump inhibitors"),
    (r"nsaids?", "nsaids"),
    (r"corticosteroid|steroid cream|topical steroid", "topical corticosteroids"),
    (r"nitro", "nitroglycerin"),
    (r"anti-fungal|antifungal", "antifungals"),
    (r"muscle relaxant", "muscle relaxants"),
    (r"nausea medication|nausea prescription|anti nausea medication", "antiemetics"),
    (r"probiotic", "probiotics"),
    (r"antibiotics?", "antibiotics"),
    (r"thyroid meds", "thyroid medicine"),
    (r"painkiller", "pain relievers"),
]
KQA_PATTERNS = [(re.compile(r"\b(?:%s)\b" % p, re.I), f) for p, f in KQA_LEXICON]

# openFDA cache keys (brand or generic, as the cache has them) -> generic, so that the same drug
# under two names is kept once and lands on one side of the split.
SALTS = (r"\s+(hydrochloride|hcl|sodium|sulfate|calcium|acetate|tartrate|bisulfate|phosphate|"
         r"monohydrate|citrate|benzoate|bromide|sodium succinate|intrathecal)$")
BRANDS = {
    "abilify": "aripiprazole", "celebrex": "celecoxib", "clozaril": "clozapine",
    "depakote": "divalproex", "depakote er": "divalproex", "dilantin": "phenytoin",
    "haldol": "haloperidol", "lamictal": "lamotrigine", "lasix": "furosemide",
    "lipitor": "atorvastatin", "zocor": "simvastatin", "seroquel": "quetiapine",
    "zoloft": "sertraline", "valium": "diazepam", "zovirax": "acyclovir",
    "wellbutrin xl": "bupropion", "rituxan": "rituximab", "imbruvica": "ibrutinib",
    "casodex": "bicalutamide", "revatio": "sildenafil", "levoxyl": "levothyroxine",
    "sandostatin": "octreotide", "signifor": "pasireotide", "zithromax": "azithromycin",
    "singulair": "montelukast", "ventolin": "albuterol", "propecia": "finasteride",
    "zyprexa": "olanzapine", "inderal": "propranolol", "cozaar": "losartan", "diovan": "valsartan",
    "eliquis": "apixaban", "victoza": "liraglutide", "januvia": "sitagliptin",
    "topamax": "topiramate", "remeron": "mirtazapine", "pristiq": "desvenlafaxine",
    "lunesta": "eszopiclone", "ms contin": "morphine", "neoral": "cyclosporine",
    "prograf": "tacrolimus", "cellcept": "mycophenolate", "mycophenolate mofetil": "mycophenolate",
    "reclast": "zoledronic acid", "procrit": "epoetin alfa", "fosamax": "alendronate",
    "xalatan": "latanoprost", "claravis": "isotretinoin", "depo testosterone": "testosterone",
    "depo-testosterone": "testosterone", "carbidopa /levodopa": "carbidopa and levodopa",
    "metformin hydrochloride": "metformin", "albuterol": "albuterol", "cialis": "tadalafil",
    "adcirca": "tadalafil", "avodart": "dutasteride", "gleevec": "imatinib", "lupron depot":
    "leuprolide", "evista": "raloxifene", "exelon": "rivastigmine", "spiriva": "tiotropium",
    "zemplar": "paricalcitol", "tecfidera": "dimethyl fumarate", "enbrel": "etanercept",
    "humira": "adalimumab", "orencia": "abatacept", "avastin": "bevacizumab",
    "herceptin": "trastuzumab", "depo-medrol": "methylprednisolone",
    "solu-medrol": "methylprednisolone", "mycophenolic acid": "mycophenolate",
}

SIDE_EFFECT_QUESTIONS = [
    "what are the most common side effects of {}?",
    "what side effects are common with {}?",
    "does {} have any common side effects?",
    "what are common side effects of taking {}?",
    "what side effects should i expect from {}?",
]

ABBREV = re.compile(r"\b(e\.g|i\.e|vs|approx|etc|Dr|Mr|Mrs|No|al|St|U\.S)\.$", re.I)


def read_source(path, commit, inner):
    """Returns the text of `inner` from a file path, a checkout, or a (bare) git mirror."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    if os.path.isfile(os.path.join(path, inner)):
        with open(os.path.join(path, inner), encoding="utf-8") as f:
            return f.read()
    out = subprocess.run(["git", "--git-dir", path if os.path.isdir(os.path.join(path, "objects"))
                          else os.path.join(path, ".git"), "show", f"{commit}:{inner}"],
                         check=True, capture_output=True)
    return out.stdout.decode("utf-8")


def sentences(text):
    """Splits on . ! ? followed by space and an upper-case letter, a digit or a quote."""
    parts, start = [], 0
    for m in re.finditer(r"[.!?](?=\s+[A-Z0-9\"'(])", text):
        cand = text[start:m.end()].strip()
        if ABBREV.search(cand) or re.search(r"\b[A-Z]\.$", cand):
            continue
        parts.append(cand)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def cut(sents, max_chars=MAX_CHARS):
    """Joins whole sentences up to max_chars; None if the first one alone is too long."""
    out = ""
    for s in sents:
        nxt = (out + " " + s).strip()
        if len(nxt) > max_chars:
            break
        out = nxt
    return out or None


def norm_ws(text):
    return re.sub(r"\s+", " ", text).strip()


def kqa_rows(text):
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        q = norm_ws(r["Question"])
        foci = []
        for pat, focus in KQA_PATTERNS:
            if pat.search(q) and focus not in foci:
                foci.append(focus)
        if not foci:
            continue
        ans = cut(sentences(norm_ws(r["Free_form_answer"])))
        if not ans or len(ans) < MIN_CHARS:
            continue
        q = re.sub(r"\s+\?$", "?", q)
        rows.append({"question": q, "answer": ans, "focus": foci[0],
                     "source": "K-QA (Itaymanes/K-QA, physician answer)",
                     "url": KQA_URL, "_drugs": foci})
    return rows


def canon_label_name(key):
    name = key.strip().strip("().").strip().lower()
    name = BRANDS.get(name, name)
    prev = None
    while prev != name:
        prev = name
        name = re.sub(SALTS, "", name)
    return BRANDS.get(name, name)


def clean_label(text):
    t = norm_ws(text)
    t = re.sub(r"\[\s*see[^\]]*\]", "", t, flags=re.I)
    t = re.sub(r"\(\s*(see\s+)?[0-9]+(\.[0-9]+)*(\s*,\s*[0-9]+(\.[0-9]+)*)*\s*\)", "", t)
    t = re.sub(r"\s+([.,;:])", r"\1", t)
    return norm_ws(t)


MOST_COMMON = re.compile(r"most (common(ly)?|frequent(ly)?)( reported| observed| occurring)? "
                         r"(clinical )?(adverse|side)", re.I)
# Where a "most common ..." sentence starts after an unpunctuated heading list ("The following
# adverse reactions are discussed elsewhere ...: A B C The most common adverse reactions are ..."):
NEW_START = re.compile(r"\b(?:The|Most) (?:most )?(?:common|frequent)")
STOP = re.compile(r"to report suspected|1-8\d\d|www\.|contact ", re.I)
TO_REPORT = re.compile(r"\s*To report SUSPECTED ADVERSE REACTIONS.*$", re.I)
# Sub-section headings, tables and the standard clinical-trials caveat are not answers.
JUNK = re.compile(r"^\d+(\.\d+)+\s|^\d+\s+[A-Z]{3,}|\bTable\s+\d|Because clinical (trials|studies) "
                  r"are conducted", re.I)


def label_rows(text):
    labels = json.loads(text)
    rows, seen_focus, seen_answer = [], set(), set()
    for key in sorted(labels):
        raw = labels[key] or ""
        if not raw.strip():
            continue
        sents = sentences(clean_label(raw))
        idx = next((i for i, s in enumerate(sents) if MOST_COMMON.search(s)), None)
        if idx is None:
            continue
        # The cache keeps the first 2,500 characters: a last "sentence" may be cut mid-way.
        first = sents[idx]
        m = NEW_START.search(first)
        if m and m.start() > 0 and MOST_COMMON.search(first[m.start():]):
            sents[idx] = first[m.start():]
        sents[idx] = TO_REPORT.sub("", sents[idx]).rstrip(" ;:,")
        if sents[idx] and sents[idx][-1] not in ".!?":
            sents[idx] += "."
        if JUNK.search(sents[idx]) \
                or len(sents[idx]) > MAX_CHARS:
            continue
        ans = sents[idx]
        for nxt in sents[idx + 1:]:
            if len(ans) >= MIN_CHARS or STOP.search(nxt) or JUNK.search(nxt) \
                    or not re.search(r"[.!?]$", nxt) or len(ans) + 1 + len(nxt) > MAX_CHARS:
                break
            ans = ans + " " + nxt
        ans = re.sub(r"\.\.+", ".", ans)
        if len(ans) < MIN_CHARS or "[" in ans or "]" in ans:  # unclosed cross-reference left
            continue
        focus = canon_label_name(key)
        if focus in seen_focus or ans in seen_answer:
            continue
        seen_focus.add(focus)
        seen_answer.add(ans)
        name = key.strip().strip("().").strip().lower()
        tmpl = random.Random(f"{SEED}:{name}").choice(SIDE_EFFECT_QUESTIONS)
        rows.append({"question": tmpl.format(name), "answer": ans, "focus": focus,
                     "source": "openFDA drug label, adverse_reactions (via KevinKingslin/medical-reviewer)",
                     "url": OPENFDA_QUERY.format(key.strip().replace(" ", "%20")),
                     "_drugs": [focus]})
    return rows


def split(rows):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in rows:
        for d in r["_drugs"][1:]:
            parent[find(d)] = find(r["_drugs"][0])
        find(r["_drugs"][0])
    groups = {}
    for r in rows:
        groups.setdefault(find(r["_drugs"][0]), []).append(r)
    keys = sorted(groups)
    random.Random(SEED).shuffle(keys)
    target = min(TEST_MAX, round(TEST_SHARE * len(rows)))
    test, train = [], []
    for k in keys:
        (test if len(test) < target else train).extend(groups[k])
    return train, test


def write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("question", "answer", "focus", "source", "url")},
                               ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kqa", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    kqa = kqa_rows(read_source(a.kqa, KQA_COMMIT, KQA_PATH))
    lab = label_rows(read_source(a.labels, LABELS_COMMIT, LABELS_PATH))
    rows = kqa + lab
    train, test = split(rows)
    tr_drugs = {d for r in train for d in r["_drugs"]}
    te_drugs = {d for r in test for d in r["_drugs"]}
    assert not tr_drugs & te_drugs, tr_drugs & te_drugs
    write(os.path.join(a.out, "train", "drugqa_train.jsonl"), train)
    write(os.path.join(a.out, "test", "drugqa_test.jsonl"), test)
    for name, part in (("train", train), ("test", test)):
        nk = sum(1 for r in part if r["source"].startswith("K-QA"))
        print(f"{name}: {len(part)} rows ({nk} K-QA, {len(part) - nk} openFDA), "
              f"{len({r['focus'] for r in part})} foci", file=sys.stderr)
    print(f"drug overlap train/test: {len(tr_drugs & te_drugs)}", file=sys.stderr)


if __name__ == "__main__":
    main()
