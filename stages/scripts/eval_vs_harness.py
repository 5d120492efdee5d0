#!/usr/bin/env python3
"""Agreement of medalign's eval with lm-evaluation-harness, from a venv outside the repository.

    python -m venv /work/venv-eval && /work/venv-eval/bin/pip install lm-eval gguf transformers torch

Subcommands:
  prompts FIXTURES          print the harness's prompts for the sample records under FIXTURES
                            (mmlu/*.csv, pubmedqa.json, medqa.jsonl, medmcqa.jsonl) as JSON
  harness DATA GGUF OUT [LIMIT]
                            run the harness (hf backend, the GGUF loaded by transformers) on
                            MMLU medical val and the PubMedQA pool under DATA; per-item
                            predictions and questions/s into OUT/harness.json
  compare HARNESS MEDALIGN  per-item agreement and accuracy of two prediction files
                            ({task: {"preds": [int], "gold": [int]}, "questions_per_s": x})

The harness's own task configs render every prompt (they are loaded from the installed package
and only pointed at local files); nothing of its templates is restated here.
"""
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SUBJECTS = ["anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
            "professional_medicine"]


def tasks_dir():
    import lm_eval
    return Path(lm_eval.__file__).parent / "tasks"


def load_func(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def mmlu_docs(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [{"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5].strip())} for r in csv.reader(f)]


def cmd_prompts(fixtures):
    import yaml
    from lm_eval.utils import apply_template
    fx, td, out = Path(fixtures), tasks_dir(), {}
    tmpl = yaml.safe_load((td / "mmlu/default/_default_template_yaml").read_text())
    desc = yaml.safe_load((td / "mmlu/default/mmlu_anatomy.yaml").read_text())["description"]
    for i, d in enumerate(mmlu_docs(fx / "mmlu/anatomy_val.csv")):
        out[f"mmlu_anatomy/{i}"] = desc + apply_template(tmpl["doc_to_text"], d)
    shot = mmlu_docs(fx / "mmlu/anatomy_dev.csv")[0]
    out["mmlu_anatomy/solved_dev_0"] = apply_template(tmpl["doc_to_text"], shot) + " " + "ABCD"[shot["answer"]]
    pub = load_func(td / "pubmedqa/preprocess_pubmedqa.py", "doc_to_text")
    for pmid, rec in json.loads((fx / "pubmedqa.json").read_text()).items():
        out[f"pubmedqa/{pmid}"] = pub(rec)
    medqa = load_func(td / "medqa/preprocess_medqa.py", "doc_to_text")
    for i, line in enumerate((fx / "medqa.jsonl").read_text().splitlines()):
        r = json.loads(line)
        doc = {"sent1": r["question"], **{f"ending{k}": v for k, v in enumerate(r["options"].values())}}
        out[f"medqa_4options/{i}"] = medqa(doc)
    medmcqa = load_func(td / "medmcqa/utils_medmcqa.py", "doc_to_text")
    for i, line in enumerate((fx / "medmcqa.jsonl").read_text().splitlines()):
        out[f"medmcqa/{i}"] = medmcqa(json.loads(line))
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    print()


def write_task_configs(data, work):
    """Local copies of the harness's mmlu_<subject> and pubmedqa tasks, reading files under DATA."""
    td = tasks_dir()
    for s in SUBJECTS:
        rows = {split: mmlu_docs(Path(data) / f"mmlu_medical/{split}/{s}_{split}.csv") for split in ("dev", "val")}
        for split, docs in rows.items():
            (work / f"{s}_{split}.json").write_text(json.dumps(docs))
        cfg = {
            "include": str(td / "mmlu/default/_default_template_yaml"),
            "task": f"local_mmlu_{s}", "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(work / f"{s}_val.json"), "dev": str(work / f"{s}_dev.json")}},
            "description": f"The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\n\n",
        }
        (work / f"local_mmlu_{s}.yaml").write_text(json.dumps(cfg))
    pool = json.loads((Path(data) / "pubmedqa/pqal_train_pool.json").read_text())
    (work / "pubmedqa.json").write_text(json.dumps([{"pmid": k, **v} for k, v in pool.items()]))
    src = (td / "pubmedqa/pubmedqa.yaml").read_text().replace("!function preprocess_pubmedqa.doc_to_text", "!function pre.doc_to_text")
    (work / "pre.py").write_text((td / "pubmedqa/preprocess_pubmedqa.py").read_text())
    lines = [l for l in src.splitlines() if not l.startswith(("task:", "dataset_path:", "dataset_name:", "training_split:", "validation_split:", "test_split:"))]
    lines += ["task: local_pubmedqa", "dataset_path: json",
              f"dataset_kwargs:\n  data_files:\n    test: {work / 'pubmedqa.json'}", "test_split: test"]
    (work / "local_pubmedqa.yaml").write_text("\n".join(lines) + "\n")


def cmd_harness(data, gguf, out_dir, limit=None):
    import lm_eval
    from lm_eval.tasks import TaskManager
    work = Path(tempfile.mkdtemp(prefix="medalign-harness-"))
    write_task_configs(data, work)
    gguf = Path(gguf).resolve()
    model_args = f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32"
    tasks = [f"local_mmlu_{s}" for s in SUBJECTS] + ["local_pubmedqa"]
    from lm_eval.models.huggingface import HFLM
    scoring = {"seconds": 0.0}
    original = HFLM.loglikelihood

    def timed(self, *a, **kw):  # time the scoring alone, not the GGUF dequantization at load
        t = time.time()
        try:
            return original(self, *a, **kw)
        finally:
            scoring["seconds"] += time.time() - t

    HFLM.loglikelihood = timed
    start = time.time()
    res = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=tasks, num_fewshot=0, batch_size=int(os.environ.get("HARNESS_BATCH", "1")),
                                  device="cpu", log_samples=True, limit=int(limit) if limit else None, task_manager=TaskManager(include_path=str(work)))
    elapsed = time.time() - start
    out, n = {}, 0
    for task, samples in res["samples"].items():
        samples = sorted(samples, key=lambda s: s["doc_id"])
        name = task.replace("local_", "")
        out[name] = {"preds": [int(max(range(len(s["filtered_resps"])), key=lambda i: s["filtered_resps"][i][0])) for s in samples],
                     "gold": [int(s["target"]) if not isinstance(s["target"], str) else ["yes", "no", "maybe"].index(s["target"]) for s in samples],
                     "acc": res["results"][task]["acc,none"]}
        n += len(samples)
    out["questions_per_s"] = n / scoring["seconds"]
    out["scoring_seconds"] = scoring["seconds"]
    out["seconds_including_load"] = elapsed
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "harness.json").write_text(json.dumps(out))
    print(json.dumps({k: (v["acc"] if isinstance(v, dict) else v) for k, v in out.items()}, indent=1))


def cmd_compare(a_path, b_path):
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    same = total = 0
    print(f"{'task':32} {'n':>4} {'harness':>8} {'medalign':>8} {'agree':>7}")
    for task in sorted(k for k in a if isinstance(a[k], dict)):
        if task not in b:
            continue
        pa, pb, gold = a[task]["preds"], b[task]["preds"], a[task]["gold"]
        assert len(pa) == len(pb), f"{task}: {len(pa)} vs {len(pb)} items"
        agree = sum(x == y for x, y in zip(pa, pb))
        acc = lambda p: 100 * sum(x == g for x, g in zip(p, gold)) / len(gold)
        print(f"{task:32} {len(pa):4} {acc(pa):8.1f} {acc(pb):8.1f} {100 * agree / len(pa):6.1f}%")
        same, total = same + agree, total + len(pa)
    print(f"{'all':32} {total:4} {'':8} {'':8} {100 * same / max(total, 1):6.1f}%")
    print(f"questions/s: harness {a.get('questions_per_s', 0):.2f}, medalign {b.get('questions_per_s', 0):.2f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    {"prompts": cmd_prompts, "harness": cmd_harness, "compare": cmd_compare}.get(cmd, lambda *_: print(__doc__))(*args)
