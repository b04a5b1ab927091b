#!/usr/bin/env python3
"""Writes tests/golden/answer_rules.jsonl: one line per extraction,
normalisation or equivalence rule of the Qwen2.5-Math toolkit, with the
result the toolkit's own code gives (tests/ref/grader_ref.py, a
transcription of parser.py / grader.py). tests/unit/test_answer.c checks
the library's answer/mathequal against every line.

Run: build/venv-eval/bin/python tests/ref/make_answer_rules.py > tests/golden/answer_rules.jsonl
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import grader_ref as G  # noqa: E402

# (rule, input, skip_unit)
STRIP = [
    ("trailing dot", "42.", 0),
    ("linebreaks", "4\n2", 0),
    ("inverse space \\!", "10\\!000", 0),
    ("dfrac", "\\dfrac{1}{2}", 0),
    ("tfrac", "\\tfrac{3}{4}", 0),
    ("frac12", "\\frac12", 0),
    ("frac1{72}", "\\frac1{72}", 0),
    ("frac a b letters", "\\fracab", 0),
    ("frac too short", "\\frac1", 0),
    ("a/b to frac", "3/4", 0),
    ("a/b negative", "-3/4", 0),
    ("a/b leading zero kept", "03/4", 0),
    ("a/b sqrt", "\\sqrt{2}/2", 0),
    ("a/b two slashes", "1/2/3", 0),
    ("sqrt3", "\\sqrt3", 0),
    ("sqrt2x", "2\\sqrt2x", 0),
    ("left right", "\\left( 3, \\frac{\\pi}{2} \\right)", 0),
    ("escaped braces", "\\{1,2\\}", 0),
    ("text unit at end", "5 \\text{ cm}", 0),
    ("text only", "\\text{Evelyn}", 0),
    ("text inside", "\\text{(C)}", 0),
    ("mbox", "7\\mbox{ inches}", 0),
    ("unit word", "5 inches", 0),
    ("unit plural", "12 apples", 0),
    ("unit skipped minerva", "5 m", 1),
    ("unit only stays", "m", 0),
    ("unit dot pattern p.m.", "3:30 p.m.", 0),
    ("degrees ^\\circ", "30^\\circ", 0),
    ("degrees ^{\\circ}", "30^{\\circ}", 0),
    ("dollar", "\\$18", 0),
    ("dollar plain", "$18$", 0),
    ("percent", "50\\%", 0),
    ("percent plain", "50%", 0),
    ("x=", "x=5", 0),
    ("y\\in", "y\\in[1,2]", 0),
    ("k = short lhs", "k = 7", 0),
    ("long lhs kept", "abc=7", 0),
    ("0.5", ".5", 0),
    (" .5", "x + .5", 0),
    ("{.5", "\\frac{.5}{2}", 0),
    ("trailing zeros", "5.000", 0),
    ("zeros then text", "5.00 dollars", 0),
    ("decimal kept", "2.50", 0),
    ("infinity", "infinity", 0),
    ("inf", "(-inf, 3)", 0),
    ("emptyset", "\\emptyset", 0),
    ("all reals", "(-\\infty,\\infty)", 0),
    ("and removed", "1 and 2", 0),
    ("mathbf", "\\mathbf{v}", 0),
    ("j to i", "3+2j", 0),
    ("neq", "x\\neq 2", 0),
    ("leq geq", "1\\leq x\\geq 0", 0),
    ("bmatrix", "\\begin{bmatrix}1&2\\end{bmatrix}", 0),
    ("array", "\\begin{array}{cc}1&2\\end{array}", 0),
    ("word number", "five", 0),
    ("word number big", "two hundred thirty", 0),
    ("word number point", "three point five", 0),
    ("digits leading zero", "007", 0),
    ("thousands comma kept", "1,000", 0),
    ("spaces removed", "1 2 3", 0),
    ("\\( \\)", "\\(5\\)", 0),
    ("unicode pi unit", "2 \u03c0 r 2", 0),
    ("degree unit word", "90 degrees", 0),
    ("unit 'c' removed", "(a, b, c)", 0),
]

# (rule, bench, text)
EXTRACT = [
    ("last boxed", "math500", "First \\boxed{1}, then \\boxed{2}."),
    ("nested braces", "math500", "So $\\boxed{\\frac{1}{\\sqrt{2}}}$."),
    ("unbalanced boxed", "math500", "Thus \\boxed{\\frac{1}{2"),
    ("boxed no brace", "math500", "answer \\boxed 5$ done"),
    ("boxed at end", "math500", "the answer is \\boxed"),
    ("he answer is", "gsm8k", "So 3 + 4 = 7.\nThe answer is 7."),
    ("final answer is", "gsm8k", "Final answer is 12 apples"),
    ("minerva hope", "minerva_math", "The final answer is $4.5e33$. I hope it is correct."),
    ("last number", "gsm8k", "She has 1,234 apples and 17 pears"),
    ("last number negative decimal", "gsm8k", "temperature -3.5 then -.25"),
    ("no number", "gsm8k", "I cannot solve this."),
    ("newline in answer", "math500", "\\boxed{1\n   + 2}"),
    ("colon prefix", "gsm8k", "The answer is: 42"),
    ("trailing slash", "gsm8k", "The answer is 5/"),
    ("choice answer is", "mmlu_stem", "Let me think. The answer is (C)."),
    ("choice is", "mmlu_stem", "So the correct choice is B"),
    ("choice last letter", "mmlu_stem", "Options A and D look wrong; B fits."),
    ("choice no letter", "mmlu_stem", "I am not sure."),
    ("choice ICL", "mmlu_stem", "The answer is (A).\n\nQuestion: next\nThe answer is (B)."),
    ("ki tags", "gsm8k", "step \u043a\u0438 The answer is 9 \u043a\u0438"),
    ("chinese trigger", "gsm8k", "\u6240\u4ee5\u7b54\u6848\u662f 8\n\n\u7b54\u6848\u662f 9"),
    ("stop string cut", "gsm8k", "The answer is 4.<|im_end|>The answer is 5."),
    ("stop string </s>", "math500", "So \\boxed{4}.</s>Next: \\boxed{5}"),
    ("stop string <|endoftext|>", "gsm8k", "The answer is 6.<|endoftext|>The answer is 7."),
    ("minerva no unit strip", "minerva_math", "\\boxed{5 m}"),
    ("text space before brace", "math500", "So $\\boxed{\\text {Evelyn}}$ wins."),
    ("text space unit", "math500", "$\\boxed{5 \\text { cm}}$"),
    ("text space two", "math500", "$\\boxed{\\text {A} \\text{B}}$"),
    ("text space choice", "mmlu_stem", "The answer is $\\boxed{\\text {(B)}}$"),
]

# (rule, pred, gold)
EQUAL = [
    ("string equal", "7", "7"),
    ("case insensitive", "Evelyn", "evelyn"),
    ("numeric 1e-4", "3.14159", "3.1416"),
    ("numeric outside 1e-4", "3.14", "3.1416"),
    ("percent x/100", "0.5", "50"),
    ("percent x*100", "50", "0.5"),
    ("percent sign", "50%", "0.5"),
    ("commas", "1,000", "1000"),
    ("choice letter", "(B)", "B"),
    ("choice wrong", "A", "B"),
    ("frac vs decimal", "\\frac{1}{2}", "0.5"),
    ("frac vs frac", "\\frac{2}{4}", "\\frac{1}{2}"),
    ("sqrt", "\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("pi", "2\\pi", "\\pi\\cdot2"),
    ("pi approx", "6.2832", "2\\pi"),
    ("tuple", "(1,2)", "(1,2.0)"),
    ("tuple frac", "(1,4.5)", "(1,\\frac{9}{2})"),
    ("tuple wrong", "(1,2)", "(2,1)"),
    ("interval", "[2,5)", "[2,5)"),
    ("interval bracket kinds ignored", "(2,5)", "[2,5]"),
    ("brackets dropped", "{1,2}", "1,2"),
    ("matrix", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4.0\\end{pmatrix}"),
    ("matrix wrong", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}"),
    ("equation vs value", "x=5", "5"),
    ("equations", "y=2x+1", "y=1+2x"),
    ("equations sign", "x-y=1", "y-x=-1"),
    ("equations differ", "y=2x", "y=3x"),
    ("expression", "x^2+2x+1", "(x+1)^2"),
    ("expression differ", "x^2+1", "(x+1)^2"),
    ("implicit mult", "2\\sqrt{3}", "\\sqrt{12}"),
    ("multi answer first", "3", "3,5,7"),
    ("grouped digits", "2251252", "(2,251,252)"),
    ("empty pred", "", "5"),
    ("infty", "\\infty", "\\infty"),
    ("log", "\\ln{e^2}", "2"),
    ("trig", "\\sin{\\frac{\\pi}{6}}", "\\frac{1}{2}"),
    ("text answers", "Evelyn", "Evelny"),
    ("sci notation", "4.5e33", "4.5\\times10^{33}"),
    ("call form is not its argument", "I(0)", "0"),
    ("call form f(2)", "f(2)", "2"),
    ("value is not a call form", "0", "I(0)"),
    ("letter call x(x+1)", "x(x+1)", "x^2+x"),
    ("number times group", "2(3)", "6"),
    ("list first member", "5,15", "5"),
    ("list second member", "5,15", "15"),
    ("member vs list", "5", "5,15"),
    ("list reordered", "15,5", "5,15"),
    ("raw gold groups of three", "10100", "10, 100"),
    ("raw gold list is one number", "10", "10, 100"),
    ("raw gold spaced digits", "10,100", "10, 100"),
]


def main():
    for rule, s, skip in STRIP:
        print(json.dumps({"fn": "strip", "rule": rule, "in": s, "skip_unit": skip,
                          "out": G.strip_string(s, skip_unit=bool(skip))}, ensure_ascii=False))
    for rule, bench, text in EXTRACT:
        # what lr-eval's ans_extract returns: math_eval's stop-cut + extract_answer + strip_string
        code = text.rstrip().strip()
        for st in G.STOP:
            if st in code:
                code = code.split(st)[0].strip()
        out = G.strip_string(G.extract_answer(code, bench), skip_unit=bench in G.STRIP_EXCEPTIONS)
        print(json.dumps({"fn": "extract", "rule": rule, "bench": bench, "in": text, "out": out}, ensure_ascii=False))
    for rule, p, g in EQUAL:
        print(json.dumps({"fn": "equal", "rule": rule, "pred": p, "gold": g, "out": bool(G.math_equal(p, g))},
                         ensure_ascii=False))


if __name__ == "__main__":
    main()
