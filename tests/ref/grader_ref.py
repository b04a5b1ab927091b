#!/usr/bin/env python3
"""Reference verdicts: the Qwen2.5-Math evaluation toolkit's own scoring
logic (evaluation/parser.py, grader.py, the post-processing in
math_eval.py), transcribed here so goldens can be regenerated without the
toolkit checkout. Used only to WRITE tests/golden/*; the tests themselves
never run Python.

Input: JSON lines {"bench", "prediction", "gold"} on stdin (gold: the raw
gold answer, as lr-eval's loaders produce it; a JSON number is used as the
toolkit uses svamp's numeric Answer). Output: each line with "extracted"
and "correct" added, like `lr-eval judge`.

Environment: build/venv-eval (sympy, regex, word2number,
antlr4-python3-runtime 4.11 for sympy's parse_latex). latex2sympy2 is not
importable next to antlr 4.11, so its fallback in symbolic_equal is skipped
(sympy's parse_latex and parse_expr are tried first in the toolkit too).
The toolkit runs math_equal in a process pool with a 3 s timeout; here a
SIGALRM of 3 s gives the same "timeout -> incorrect".
"""
import json
import re
import signal
import sys

import regex
from sympy import N, simplify
from sympy.parsing.latex import parse_latex
from sympy.parsing.sympy_parser import parse_expr
from word2number import w2n
from math import isclose

# ---------------- parser.py ----------------


def _fix_fracs(string):
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        substrs = substrs[1:]
        for substr in substrs:
            new_str += "\\frac"
            if len(substr) > 0 and substr[0] == "{":
                new_str += substr
            else:
                try:
                    assert len(substr) >= 2
                except AssertionError:
                    return string
                a = substr[0]
                b = substr[1]
                if b != "{":
                    if len(substr) > 2:
                        new_str += "{" + a + "}{" + b + "}" + substr[2:]
                    else:
                        new_str += "{" + a + "}{" + b + "}"
                else:
                    if len(substr) > 2:
                        new_str += "{" + a + "}" + b + substr[2:]
                    else:
                        new_str += "{" + a + "}" + b
    return new_str


def _fix_a_slash_b(string):
    if len(string.split("/")) != 2:
        return string
    a = string.split("/")[0]
    b = string.split("/")[1]
    try:
        if "sqrt" not in a:
            a = int(a)
        if "sqrt" not in b:
            b = int(b)
        assert string == "{}/{}".format(a, b)
        return "\\frac{" + str(a) + "}{" + str(b) + "}"
    except Exception:
        return string


def _fix_sqrt(string):
    return re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", string)


def convert_word_number(text):
    try:
        text = str(w2n.word_to_num(text))
    except Exception:
        pass
    return text


unit_texts = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey",
    "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab",
    "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men",
    "soldier", "pie", "bc", "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre",
    "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit",
    "minw", "yr", "women", "feet", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds",
    "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute", "min", "second", "man",
    "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m",
    "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter", "loss", "yard", "pure",
    "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .", "metre", "meter", "inch",
]
unit_texts.extend([t + "s" for t in unit_texts])


def strip_string(string, skip_unit=False):
    string = str(string).strip()
    string = string.replace("\n", "")
    string = string.rstrip(".")
    string = string.replace("\\!", "")
    string = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", string)
    string = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", string)
    string = string.replace("bmatrix", "pmatrix")
    string = string.replace("tfrac", "frac")
    string = string.replace("dfrac", "frac")
    string = string.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    string = string.replace("\\left", "")
    string = string.replace("\\right", "")
    string = string.replace("\\{", "{")
    string = string.replace("\\}", "}")
    _string = re.sub(r"\\text{.*?}$", "", string).strip()
    if _string != "" and _string != string:
        string = _string
    if not skip_unit:
        for _ in range(2):
            for unit_text in unit_texts:
                _string = re.sub(r"(^|\W)" + unit_text + r"($|\W)", r"\1\2", string)
                if _string != "":
                    string = _string
    string = string.replace("^{\\circ}", "")
    string = string.replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = string.replace("$", "")
    string = string.replace("\\(", "").replace("\\)", "")
    string = convert_word_number(string)
    string = re.sub(r"\\text\{(.*?)\}", r"\1", string)
    for key in ["x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]:
        string = string.replace(key, "")
    string = string.replace("\\emptyset", r"{}")
    string = string.replace("(-\\infty,\\infty)", "\\mathbb{R}")
    string = string.replace("\\%", "")
    string = string.replace("%", "")
    string = string.replace(" .", " 0.")
    string = string.replace("{.", "{0.")
    if (
        string.startswith("{") and string.endswith("}") and string.isalnum()
        or string.startswith("(") and string.endswith(")") and string.isalnum()
        or string.startswith("[") and string.endswith("]") and string.isalnum()
    ):
        string = string[1:-1]
    string = string.replace("infinity", "\\infty")
    if "\\infty" not in string:
        string = string.replace("inf", "\\infty")
    string = string.replace("+\\inity", "\\infty")
    string = string.replace("and", "")
    string = string.replace("\\mathbf", "")
    string = re.sub(r"\\mbox{.*?}", "", string)
    if "j" in string and "i" not in string:
        string = string.replace("j", "i")
    string = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", string)
    string = re.sub(r"(\d+)\.0*$", r"\1", string)
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2:
        if len(string.split("=")[0]) <= 2:
            string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    string = _fix_a_slash_b(string)
    return string


direct_answer_trigger_for_fewshot = ("choice is", "answer is")


def choice_answer_clean(pred):
    pred = pred.strip("\n")
    ICL = False
    for trigger in direct_answer_trigger_for_fewshot:
        if pred.count(trigger) > 1:
            ICL = True
    if ICL:
        pred = pred.split("\n\n")[0]
    preds = re.split("|".join(direct_answer_trigger_for_fewshot), pred)
    if len(preds) > 1:
        answer_flag = True
        pred = preds[-1]
    else:
        answer_flag = False
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    tmp = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    if tmp:
        pred = tmp
    else:
        pred = [pred.strip().strip(".")]
    if len(pred) == 0:
        pred = ""
    else:
        pred = pred[0] if answer_flag else pred[-1]
    pred = pred.rstrip(".").rstrip("/")
    return pred


def extract_answer(pred_str, data_name, use_last_number=True):
    pred_str = pred_str.replace("\u043a\u0438", "")
    if data_name in ["mmlu_stem", "sat_math", "aqua", "gaokao2023"]:
        return choice_answer_clean(pred_str)
    if "final answer is $" in pred_str and "$. I hope" in pred_str:
        tmp = pred_str.split("final answer is $", 1)[1]
        pred = tmp.split("$. I hope", 1)[0].strip()
    elif "boxed" in pred_str:
        ans = pred_str.split("boxed")[-1]
        if len(ans) == 0:
            return ""
        elif ans[0] == "{":
            stack = 1
            a = ""
            for c in ans[1:]:
                if c == "{":
                    stack += 1
                    a += c
                elif c == "}":
                    stack -= 1
                    if stack == 0:
                        break
                    a += c
                else:
                    a += c
        else:
            a = ans.split("$")[0].strip()
        pred = a
    elif "he answer is" in pred_str:
        pred = pred_str.split("he answer is")[-1].strip()
    elif "final answer is" in pred_str:
        pred = pred_str.split("final answer is")[-1].strip()
    elif "答案是" in pred_str:
        pred = pred_str.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        if use_last_number:
            pattern = r"-?\d*\.?\d+"
            pred = re.findall(pattern, pred_str.replace(",", ""))
            pred = pred[-1] if len(pred) >= 1 else ""
        else:
            pred = ""
    if data_name in ["sat_math", "aqua"] or "mmlu" in data_name:
        tmp = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
        pred = tmp[-1] if tmp else pred.strip().strip(".")
    pred = re.sub(r"\n\s*", "", pred)
    if pred != "" and pred[0] == ":":
        pred = pred[1:]
    if pred != "" and pred[-1] == ".":
        pred = pred[:-1]
    if pred != "" and pred[-1] == "/":
        pred = pred[:-1]
    pred = strip_string(pred, skip_unit=data_name in ["carp_en", "minerva_math"])
    return pred


STRIP_EXCEPTIONS = ["carp_en", "minerva_math"]

# ---------------- grader.py ----------------


def grader_choice_answer_clean(pred):
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    tmp = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    pred = tmp if tmp else [pred.strip().strip(".")]
    pred = pred[-1]
    return pred.rstrip(".").rstrip("/")


def parse_digits(num):
    num = regex.sub(",", "", str(num))
    try:
        return float(num)
    except Exception:
        if num.endswith("%"):
            num = num[:-1]
            if num.endswith("\\"):
                num = num[:-1]
            try:
                return float(num) / 100
            except Exception:
                pass
    return None


def is_digit(num):
    return parse_digits(num) is not None


def str_to_pmatrix(input_str):
    input_str = input_str.strip()
    matrix_str = re.findall(r"\{.*,.*\}", input_str)
    pmatrix_list = []
    for m in matrix_str:
        m = m.strip("{}")
        pmatrix_list.append(r"\begin{pmatrix}" + m.replace(",", "\\") + r"\end{pmatrix}")
    return ", ".join(pmatrix_list)


def numeric_equal(prediction, reference):
    return isclose(reference, prediction, rel_tol=1e-4)


def is_numerical_equal(prediction, reference, include_percentage, is_close):
    if is_digit(prediction) and is_digit(reference):
        prediction = parse_digits(prediction)
        reference = parse_digits(reference)
        gt_result = [reference / 100, reference, reference * 100] if include_percentage else [reference]
        for item in gt_result:
            try:
                if is_close:
                    if numeric_equal(prediction, item):
                        return True
                elif item == prediction:
                    return True
            except Exception:
                continue
    return False


def has_format(s, a, b):
    return s.startswith(a) and s.endswith(b)


def is_list_format(s):
    return regex.match(r"(\(|\[).+(\)|\])", s) is not None


def is_matrix_format(s):
    return (s.startswith("\\begin{pmatrix}") or s.startswith("\\begin{bmatrix}")) and (
        s.endswith("\\end{pmatrix}") or s.endswith("\\end{bmatrix}"))


def compare_lists(prediction, reference, ip, ic):
    p = prediction[1:-1].split(",")
    r = reference[1:-1].split(",")
    if len(p) == len(r):
        return all(math_equal(p[i], r[i], ip, ic) for i in range(len(p)))
    return False


def compare_matrices(prediction, reference, ip, ic):
    pl = [l.strip() for l in prediction[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")].split("\\\\") if l.strip()]
    rl = [l.strip() for l in reference[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")].split("\\\\") if l.strip()]
    if len(pl) == len(rl):
        for a, b in zip(pl, rl):
            pa, ra = a.split("&"), b.split("&")
            if len(pa) != len(ra):
                return False
            if not all(math_equal(pa[i], ra[i], ip, ic) for i in range(len(pa))):
                return False
        return True
    return False


def format_equation(equation):
    parts = equation.split("=")
    return f"{parts[0].strip()} - ({parts[1].strip()})"


def symbolic_equal(a, b):
    def _parse(s):
        for f in [parse_latex, parse_expr]:
            try:
                return f(s.replace("\\\\", "\\"))
            except Exception:
                try:
                    return f(s)
                except Exception:
                    pass
        return s

    a = _parse(a)
    b = _parse(b)
    try:
        if str(a) == str(b) or a == b:
            return True
    except Exception:
        pass
    try:
        if a.equals(b) or simplify(a - b) == 0:
            return True
    except Exception:
        pass
    try:
        if (abs(a.lhs - a.rhs)).equals(abs(b.lhs - b.rhs)):
            return True
    except Exception:
        pass
    try:
        if numeric_equal(float(N(a)), float(N(b))):
            return True
    except Exception:
        pass
    try:
        if a.shape == b.shape:
            _a = a.applyfunc(lambda x: round(x, 3))
            _b = b.applyfunc(lambda x: round(x, 3))
            if _a.equals(_b):
                return True
    except Exception:
        pass
    return False


def is_simple_equation(e):
    return e.count("=") == 1 and len(e.split("=")[0].strip()) <= 2


def math_equal(prediction, reference, include_percentage=True, is_close=True):
    if prediction is None or reference is None:
        return False
    if str(prediction.strip().lower()) == str(reference.strip().lower()):
        return True
    if reference in ["A", "B", "C", "D", "E"] and grader_choice_answer_clean(prediction) == reference:
        return True
    if is_numerical_equal(prediction, reference, include_percentage, is_close):
        return True
    if not prediction and prediction not in [0, False]:
        return False
    reference = str(reference).strip()
    prediction = str(prediction).strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = str_to_pmatrix(reference)
    pred_str, ref_str = prediction, reference
    if (has_format(pred_str, "[", "]") and not has_format(ref_str, "(", ")")) or (
            has_format(pred_str, "(", ")") and not has_format(ref_str, "[", "]")):
        pred_str = pred_str.strip("[]()")
        ref_str = ref_str.strip("[]()")
    for br in ["{", "}", "(", ")"]:
        pred_str = pred_str.replace(br, "")
        ref_str = ref_str.replace(br, "")
    if pred_str.lower() == ref_str.lower():
        return True
    if is_list_format(prediction) and is_list_format(reference):
        return compare_lists(prediction, reference, include_percentage, is_close)
    if is_matrix_format(prediction) and is_matrix_format(reference):
        return compare_matrices(prediction, reference, include_percentage, is_close)
    if prediction.count("=") == 1 and reference.count("=") == 1:
        p, r = format_equation(prediction), format_equation(reference)
        return symbolic_equal(p, r) or symbolic_equal(f"-({p})", r)
    elif is_simple_equation(prediction) and "=" not in reference:
        return math_equal(prediction.split("=")[1], reference, include_percentage, is_close)
    elif is_simple_equation(reference) and "=" not in prediction:
        return math_equal(prediction, reference.split("=")[1], include_percentage, is_close)
    return symbolic_equal(prediction, reference)


# ---------------- math_eval.py glue ----------------

STOP = ["</s>", "<|im_end|>", "<|endoftext|>"]


def is_multi_choice(answer):
    return all(c in ["A", "B", "C", "D", "E"] for c in answer)


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def judge(bench, prediction, gold):
    if isinstance(gold, int) and bench == "mmlu_stem":
        gold = "ABCD"[gold]
    if bench in STRIP_EXCEPTIONS:
        gt = str(gold).replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    else:
        gt = strip_string(gold)
    code = prediction.rstrip().strip()
    for s in STOP:
        if s in code:
            code = code.split(s)[0].strip()
    pred = extract_answer(code, bench)
    pred = strip_string(pred, skip_unit=bench in STRIP_EXCEPTIONS)
    if gt in ["A", "B", "C", "D", "E"] and pred not in ["A", "B", "C", "D", "E"]:
        pred = choice_answer_clean(code)
    elif is_multi_choice(gt) and not is_multi_choice(pred):
        pred = "".join(c for c in pred if c in ["A", "B", "C", "D", "E"])
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(3)
    try:
        ok = math_equal(pred, gt)
    except Timeout:
        ok = False
    except Exception:
        ok = False
    finally:
        signal.alarm(0)
    return pred, bool(ok)


def main():
    sys.setrecursionlimit(10000)
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        ex, ok = judge(r["bench"], r["prediction"], r["gold"])
        r["extracted"] = ex
        r["correct"] = ok
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
