#!/usr/bin/env python3
"""Writes tests/golden/eval_corpus.jsonl: realistic model outputs (long
chains of thought, several boxed answers, boxed inside text, truncated
outputs, LaTeX variants, multiple choice) with the toolkit's verdict, from
tests/ref/grader_ref.py. tests/cli/eval_corpus.sh checks `lr-eval judge`
against every line.

Run: build/venv-eval/bin/python tests/ref/make_eval_corpus.py > tests/golden/eval_corpus.jsonl
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import grader_ref as G  # noqa: E402

LONG_COT = "".join(
    f"Step {i}: we compute {i} * 3 = {i * 3}, then add it to the running total.\n" for i in range(1, 120))

C = [
    # (bench, prediction, gold, note)
    ("gsm8k", "Janet's ducks lay 16 eggs per day. She eats 3 and bakes 4, so 16 - 3 - 4 = 9 eggs remain.\n"
              "She sells them for $2 each: 9 * 2 = $18.\nThe final answer is $\\boxed{18}$.", " 18", "boxed dollars"),
    ("gsm8k", "16 - 3 - 4 = 9. 9 * 2 = 18. So she makes 18 dollars every day.", " 18", "last number"),
    ("gsm8k", "So she makes \\$18.00 per day.\n\nThe answer is: \\$18.00", " 18", "he answer is with dollars"),
    ("gsm8k", "The total is 1,234,567 dollars.", " 1234567", "thousands separators"),
    ("gsm8k", "Let's think.\n" + LONG_COT + "Therefore the answer is \\boxed{357}.", " 357", "long chain of thought"),
    ("gsm8k", "First guess \\boxed{10}. Wait, that is wrong. Recomputing: 3 * 4 = 12, so \\boxed{12}.", " 12",
     "several boxed: last wins"),
    ("gsm8k", "First guess \\boxed{12}. Wait, recomputing gives \\boxed{10}.", " 12", "several boxed: last is wrong"),
    ("gsm8k", "The robe needs 2 bolts of blue and 2/2 = 1 of white, so 2 + 1 = 3 bolts in total.\n"
              "The answer is 3 bolts.", " 3", "unit word"),
    ("gsm8k", "We need 5 + 7 = 12, then 12 * 3 =", " 36", "truncated output: last number"),
    ("gsm8k", "Step 1: 20% of 50 is 10.\nSo the answer is 10%", " 10", "percent sign"),
    ("gsm8k", "The answer is 0.5", " 50", "percent form accepted"),
    ("gsm8k", "It takes \\boxed{3.0} hours.", " 3", "3.0 vs 3"),
    ("gsm8k", "The answer is -5.", " 5", "sign matters"),
    ("gsm8k", "John has 5 apples.<|im_end|>\nThe answer is 7.", " 5", "stop string"),
    ("gsm8k", "\u043a\u0438 Step one \u043a\u0438 The answer is 9. \u043a\u0438", " 9", "step tags"),
    ("math500", "We have $r = \\sqrt{0^2 + 3^2} = 3$ and $\\theta = \\frac{\\pi}{2}$.\n"
                "Therefore the polar coordinates are $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.",
     "\\left( 3, \\frac{\\pi}{2} \\right)", "tuple with left/right"),
    ("math500", "So the answer is $\\boxed{(3,\\tfrac{\\pi}{2})}$.", "\\left( 3, \\frac{\\pi}{2} \\right)", "tfrac in tuple"),
    ("math500", "The answer is $\\boxed{\\dfrac{14}{3}}$.", "\\frac{14}{3}", "dfrac"),
    ("math500", "The answer is $\\boxed{14/3}$.", "\\frac{14}{3}", "a/b"),
    ("math500", "The answer is $\\boxed{4.6667}$.", "\\frac{14}{3}", "decimal vs fraction"),
    ("math500", "The value is $\\boxed{\\frac{\\sqrt{3}}{3}}$.", "\\frac{1}{\\sqrt{3}}", "equivalent radicals"),
    ("math500", "Thus $x = \\boxed{5}$.", "5", "boxed inside text"),
    ("math500", "Thus $\\boxed{x = 5}$.", "5", "x= in box"),
    ("math500", "Hence the answer is $\\boxed{p - q}$.", "p - q", "expression"),
    ("math500", "Hence the answer is $\\boxed{-q+p}$.", "p - q", "reordered expression"),
    ("math500", "The angle is $\\boxed{90^\\circ}$.", "90^\\circ", "degrees"),
    ("math500", "The angle is $\\boxed{90}$ degrees.", "90^\\circ", "degrees in words"),
    ("math500", "So the set is $\\boxed{(-\\infty, -5) \\cup (-5, 5)}$.", "(-\\infty,-5)\\cup(-5,5)", "union of intervals"),
    ("math500", "The interval is $\\boxed{[2, 5)}$.", "[2,5)", "half-open interval"),
    ("math500", "So $\\boxed{\\text{Evelyn}}$ runs fastest.", "\\text{Evelyn}", "text answer"),
    ("math500", "So the base-2 result is $\\boxed{10001_2}$.", "10001_2", "subscript base"),
    ("math500", "The matrix is $\\boxed{\\begin{pmatrix} 4/13 & -6/13 \\\\ -6/13 & 9/13 \\end{pmatrix}}$.",
     "\\begin{pmatrix} \\frac{4}{13} & -\\frac{6}{13} \\\\ -\\frac{6}{13} & \\frac{9}{13} \\end{pmatrix}", "matrix"),
    ("math500", "The answer is $\\boxed{\\frac{1}{2}", "\\frac12", "truncated inside box"),
    ("math500", "Let me compute. $\\frac{386}{64} - 7 = \\frac{386 - 448}{64}$ and then \\[\\frac{386}{64}",
     "-\\frac{31}{32}", "truncated, no answer"),
    ("math500", "The final answer is $\\boxed{6z^5+15z^4-22z^3-8z^2+17z-6}$.",
     "6z^5+15z^4-22z^3-8z^2+17z-6", "polynomial"),
    ("math500", "The final answer is $\\boxed{2x^2 + 3x + 1}$.", "(2x+1)(x+1)", "factored vs expanded"),
    ("math500", "Thus $k = \\boxed{\\frac{3}{4}}$", "0.75", "fraction vs decimal gold"),
    ("math500", "The answer is \\boxed{\\sqrt2}", "\\sqrt{2}", "sqrt without braces"),
    ("math500", "So $a+d=\\boxed{0}$.\nThe answer is 0", "0", "box and trigger"),
    ("math500", "Answer: \\boxed{\\{1, 2\\}}", "\\{1,2\\}", "set braces"),
    ("minerva_math", "s = \\alpha f, so $s = \\boxed{1.6} \\mathrm{~cm}$", "1.6", "minerva boxed with unit after"),
    ("minerva_math", "The luminosity is $\\boxed{4.5 \\times 10^{33}}$ erg/s.", "4.5e33", "sci notation forms"),
    ("minerva_math", "Final answer: The final answer is $4.5e33$. I hope it is correct.", "4.5e33", "minerva format"),
    ("minerva_math", "The period is \\boxed{5 m}", "5", "no unit strip for minerva"),
    ("olympiadbench", "Sergey needs two moves. Therefore the answer is $\\boxed{2}$.", "2", "olympiad number"),
    ("olympiadbench", "The solutions are $\\boxed{(1,2),(2,1)}$.", "(1,2),(2,1)", "olympiad pairs"),
    ("olympiadbench", "So $n = \\boxed{3}$.", "3,5,7", "multi-answer gold (toolkit quirk)"),
    ("olympiadbench", "The answer is $\\boxed{\\frac{\\sqrt{5}-1}{2}}$", "\\frac{-1+\\sqrt{5}}{2}", "golden ratio"),
    ("svamp", "There are 290 bananas in 2 groups: 290 / 2 = 145.\nThe answer is 145.", 145.0, "numeric gold 145.0"),
    ("svamp", "So each group has \\boxed{145.5} bananas.", 145.0, "close but wrong"),
    ("asdiv", "7 + 2 = 9 apples.\nThe answer is 9 apples.", "9 ", "asdiv unit removed from gold"),
    ("asdiv", "She arrives at \\boxed{3:30 \\text{ p.m.}}", "3:30 p.m.", "time answer"),
    ("mmlu_stem", "Let's analyze each option.\n(A) is wrong because... (B) is also wrong.\nThe answer is (C).", "C",
     "mmlu answer is"),
    ("mmlu_stem", "The correct choice is D.", "D", "mmlu choice is"),
    ("mmlu_stem", "Answer: \\boxed{B}", "B", "mmlu boxed letter"),
    ("mmlu_stem", "I think it's B, but actually A and C are possible. Final: D", "D", "mmlu last letter"),
    ("mmlu_stem", "The answer is (A).\n\nQuestion: What is 2+2?\nAnswer Choices: (A) 3 (B) 4\nThe answer is (B).", "A",
     "mmlu few-shot continuation"),
    ("mmlu_stem", "None of the options seem right.", "A", "mmlu no letter"),
    ("mmlu_stem", "The answer is (B).", 1, "mmlu gold index"),
]


def main():
    for bench, pred, gold, note in C:
        ex, ok = G.judge(bench, pred, gold)
        print(json.dumps({"bench": bench, "prediction": pred, "gold": gold, "note": note,
                          "extracted": ex, "correct": ok}, ensure_ascii=False))


if __name__ == "__main__":
    main()
