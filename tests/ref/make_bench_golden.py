#!/usr/bin/env python3
"""Writes tests/golden/bench_digest.json and tests/golden/prompt_*.txt: what
the Qwen2.5-Math toolkit makes of the seven benchmark files in
data/ (parse_question, parse_ground_truth, construct_prompt with
prompt_type qwen25-math-cot; 5 shots for mmlu_stem), transcribed here.
tests/unit/test_benchdata.c checks lib/eval/benchdata against them.

digest: per benchmark, the row count and FNV-1a 64 over every row's
"question\\tgold\\n" (gold after the toolkit's normalisation), so every row is
compared without storing the data in the repository.

Run: build/venv-eval/bin/python tests/ref/make_bench_golden.py [DATA_DIR]
"""
import json
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import grader_ref as G  # noqa: E402
from toolkit_mmlu_examples import examples as MMLU_SHOTS  # noqa: E402

root = os.path.dirname(os.path.dirname(here))
data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "data")
BENCHES = ["gsm8k", "math500", "svamp", "asdiv", "minerva_math", "olympiadbench", "mmlu_stem"]


def parse_question(ex, name):
    if name == "asdiv":
        q = f"{ex['body'].strip()} {ex['question'].strip()}"
    elif name == "svamp":
        body = ex["Body"].strip()
        if not body.endswith("."):
            body = body + "."
        q = f'{body} {ex["Question"].strip()}'
    elif name == "mmlu_stem":
        options = list(ex["choices"])
        for i, (label, option) in enumerate(zip("ABCD", options)):
            options[i] = f"({label}) {str(option).strip()}"
        q = f"{ex['question'].strip()}\nAnswer Choices: {' '.join(options)}"
    else:
        q = ""
        for key in ["question", "problem", "Question", "input"]:
            if key in ex:
                q = ex[key]
                break
    gt = parse_ground_truth(ex, name)
    if isinstance(gt, str):
        if gt.lower() in ["true", "false"]:
            q += " (True or False)"
        if gt.lower() in ["yes", "no"]:
            q += " (Yes or No)"
    return q.strip()


def parse_ground_truth(ex, name):
    if name == "minerva_math":
        gt = G.extract_answer(ex["solution"], name)
    elif name == "math500":  # this project: the file's "answer" field (docs/EVAL.md)
        gt = ex["answer"]
    elif name == "gsm8k":
        _, gt = ex["answer"].split("####")
    elif name == "svamp":
        gt = ex["Answer"]
    elif name == "asdiv":
        gt = re.sub(r"\(.*?\)", "", ex["answer"])
    elif name == "mmlu_stem":
        gt = "ABCD"[ex["answer"]]
    elif name == "olympiadbench":
        gt = ex["final_answer"][0].strip("$")
    if name not in G.STRIP_EXCEPTIONS:
        return G.strip_string(gt)
    return gt.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")


TEMPLATE = ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
            "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n")


def construct_prompt(question, name):
    demos = MMLU_SHOTS[:5] if name == "mmlu_stem" else []
    demo = "\n\n".join(TEMPLATE.format(input=q) + a for q, a in demos)
    ctx = TEMPLATE.format(input=question)
    full = ctx if not demo else demo + "\n\n" + ctx
    return full.strip(" ")


def fnv(h, b):
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    digest = {}
    for name in BENCHES:
        h = 0xCBF29CE484222325
        n = 0
        with open(os.path.join(data, name, "test.jsonl"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                ex = json.loads(line)
                q = parse_question(ex, name)
                gt = parse_ground_truth(ex, name)
                h = fnv(h, (q + "\t" + gt + "\n").encode("utf-8"))
                if n == 0:
                    with open(os.path.join(root, "tests", "golden", f"prompt_{name}_0.txt"), "w", encoding="utf-8") as p:
                        p.write(construct_prompt(q, name))
                n += 1
        digest[name] = {"rows": n, "fnv1a64": f"{h:016x}"}
    with open(os.path.join(root, "tests", "golden", "bench_digest.json"), "w") as f:
        json.dump(digest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
