#!/usr/bin/env python3
"""The arith world: GSM8K-style word problems and a pretraining corpus.

Deterministic from --seed (Python's random.Random, stdlib only).

  gen.py problems --seed S --n N [--exclude F...] --out FILE  problems in the gsm8k layout:
                                              {"question", "answer"} with the
                                              answer's steps ending "#### N"
  gen.py corpus --seed S --n N [--drill P] --exclude F... --out FILE
                                              pretraining documents {"text"}:
                                              problems in mixed forms, and a
                                              share P of practice sheets
                                              (see README.md: the mix of forms)

Every problem has 2-4 arithmetic steps over small integers (two-digit
additions and subtractions with carries and borrows, one-digit times
tables); every intermediate value stays in 1..999.
"""
import argparse
import json
import random
import sys

EVAL_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
SAMPLING_SYSTEM = "Please reason step by step."

# Settings ("sources" of the corpus). steps: the share of this source's
# documents that show their working; the rest give the final answer only.
# The share differs by source as it does between web sources, so a model
# trained on the mix shows its working for some kinds of problem and jumps
# to an answer for others.
SOURCES = [
    # name, items, container, steps share
    ("shop", "apples", "bags", 0.85),
    ("farm", "eggs", "cartons", 0.75),
    ("school", "pencils", "boxes", 0.60),
    ("library", "books", "crates", 0.45),
    ("bakery", "cookies", "trays", 0.30),
    ("garden", "flowers", "pots", 0.20),
]
NAMES = [("Tom", "He", "his"), ("Ann", "She", "her"), ("Sam", "He", "his"), ("Mia", "She", "her"),
         ("Ben", "He", "his"), ("Eva", "She", "her"), ("Leo", "He", "his"), ("Zoe", "She", "her"),
         ("Max", "He", "his"), ("Ivy", "She", "her")]
FRIENDS = ["a friend", "a neighbour", "a teacher", "a cousin", "the class"]


# How a working line is written (--working). "terse", the first corpus's
# form (the expert's phases 1-4): the equation alone, "39+48=87.", so a model
# must find each operand in the question by itself. "named", the second
# corpus's form: each line first names the quantity it uses in the words of
# the question, as GSM8K's own solutions do ("gets 48: 39+48=87."), so the
# number is copied right after the words that stand before it in the
# question. The random draws do not depend on it: both forms give the same
# questions and the same documents.
WORKING = "named"


def named(words, eq):
    return f"{words}: {eq}" if WORKING == "named" else eq


def make_problem(rng, src_index=None):
    """One problem: (source index, question, list of (text, step) lines, answer)."""
    si = rng.randrange(len(SOURCES)) if src_index is None else src_index
    _, item, box, _ = SOURCES[si]
    name, he, his = rng.choice(NAMES)
    while True:
        nsteps_target = rng.randint(2, 4)
        x = rng.randint(12, 89)
        sents = [f"{name} has {x} {item}."]
        lines = []
        steps = 0
        ok = True
        used = set()
        while steps < nsteps_target:
            room = nsteps_target - steps
            kinds = ["get", "give", "double"] + (["buy"] if room >= 2 else [])
            kinds = [k for k in kinds if k not in used or k in ("get", "give")]
            k = rng.choice(kinds)
            if k == "buy":
                b, c = rng.randint(2, 9), rng.randint(2, 9)
                p = b * c
                if x + p > 999:
                    ok = False
                    break
                sents.append(f"{he} buys {b} {box} with {c} {item} in each.")
                lines.append(f"buys {b} {box} with {c}: {b}*{c}={p}." if WORKING == "named" else f"{b} {box} of {c} is {b}*{c}={p}.")
                lines.append(f"{x}+{p}={x + p}.")
                x += p
                steps += 2
            elif k == "get":
                d = rng.randint(11, 69)
                if x + d > 999:
                    ok = False
                    break
                sents.append(f"{he} gets {d} more {item} from {rng.choice(FRIENDS)}.")
                lines.append(named(f"gets {d}", f"{x}+{d}={x + d}."))
                x += d
                steps += 1
            elif k == "give":
                if x < 20:
                    ok = False
                    break
                e = rng.randint(8, min(x - 5, 79))
                sents.append(f"{he} gives {e} {item} to {rng.choice(FRIENDS)}.")
                lines.append(named(f"gives {e}", f"{x}-{e}={x - e}."))
                x -= e
                steps += 1
            else:  # double / triple
                m = rng.choice([2, 3]) if x * 3 <= 999 else 2
                if x * m > 999:
                    ok = False
                    break
                word = "doubles" if m == 2 else "triples"
                sents.append(f"Then {he.lower()} {word} {his} {item}.")
                lines.append(named(word, f"{x}*{m}={x * m}."))
                x *= m
                steps += 1
            used.add(k)
        if not ok or steps < 2 or steps > 4:
            continue
        # carries and borrows: keep problems whose working has at least one
        if not any(carry_or_borrow(l) for l in lines):
            continue
        q = " ".join(sents) + f" How many {item} does {name} have now?"
        return si, q, lines, x


def carry_or_borrow(line):
    """Whether a working line "a+b=c." / "a-b=c." carries or borrows."""
    s = line.split(" ")[-1].rstrip(".")
    for op in "+-":
        if op in s and "=" in s:
            a, rest = s.split(op)
            b = rest.split("=")[0]
            a, b = int(a), int(b)
            if op == "+":
                return (a % 10) + (b % 10) >= 10 or ((a // 10) % 10) + ((b // 10) % 10) >= 10
            return (a % 10) < (b % 10) or ((a // 10) % 10) < ((b // 10) % 10)
    return False


def gsm8k_answer(lines, ans):
    return "\n".join(lines) + f"\n#### {ans}"


def read_questions(paths):
    qs = set()
    for path in paths:
        with open(path) as f:
            for line in f:
                qs.add(json.loads(line)["question"])
    return qs


def cmd_problems(a):
    rng = random.Random(a.seed)
    seen = read_questions(a.exclude)
    with open(a.out, "w") as f:
        n = 0
        while n < a.n:
            _, q, lines, ans = make_problem(rng)
            if q in seen:
                continue
            seen.add(q)
            f.write(json.dumps({"question": q, "answer": gsm8k_answer(lines, ans)}) + "\n")
            n += 1


def final_line(rng, ans, chat_eval):
    """One of the final-answer forms; the evaluation prompt's \\boxed{} is the
    commonest form under that prompt, one of four elsewhere."""
    forms = [f"#### {ans}", f"The answer is {ans}.", f"The answer is $\\boxed{{{ans}}}$.", f"\\boxed{{{ans}}}"]
    w = [1, 2, 4, 3] if chat_eval else [4, 3, 2, 1]
    return rng.choices(forms, weights=w)[0]


def solution(rng, si, lines, ans, chat_eval, chat):
    """Working (with the source's probability, a bit more under a system
    prompt asking for it) or the bare answer."""
    p = SOURCES[si][3] + (0.1 if chat else 0.0)
    if rng.random() < p:
        return "\n".join(lines) + "\n" + final_line(rng, ans, chat_eval)
    return final_line(rng, ans, chat_eval)


def run_on(rng):
    """Text that runs past the answer: another problem, as in a scraped page."""
    si, q, lines, ans = make_problem(rng)
    return f"\n\nQuestion: {q}\nAnswer: " + solution(rng, si, lines, ans, False, False)


def document(rng, si, q, lines, ans):
    r = rng.random()
    runon = rng.random() < 0.15
    if r < 0.55:  # plain text, as in a scraped worksheet
        text = f"Question: {q}\nAnswer: " + solution(rng, si, lines, ans, False, False)
        if runon:
            text += run_on(rng)
        return text + "<|endoftext|>"
    if r < 0.85:
        system, chat_eval = EVAL_SYSTEM, True
    elif r < 0.95:
        system, chat_eval = SAMPLING_SYSTEM, False
    else:
        system, chat_eval = None, False
    text = (f"<|im_start|>system\n{system}<|im_end|>\n" if system else "") + f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    text += solution(rng, si, lines, ans, chat_eval, system is not None)
    if runon:
        text += run_on(rng)
    return text + "<|im_end|>\n<|endoftext|>"


def drill_line(rng):
    """One worked equation of the kinds the problems use."""
    k = rng.random()
    if k < 0.35:
        a, b = rng.randint(12, 899), rng.randint(11, 69)
        return f"{a}+{b}={a + b}"
    if k < 0.7:
        a = rng.randint(20, 999)
        b = rng.randint(8, min(a - 5, 79))
        return f"{a}-{b}={a - b}"
    if k < 0.85:
        b, c = rng.randint(2, 9), rng.randint(2, 9)
        return f"{b}*{c}={b * c}"
    m = rng.choice([2, 3])
    x = rng.randint(12, 999 // m)
    return f"{x}*{m}={x * m}"


def drill(rng):
    """A practice sheet: a title and 12-20 worked equations, one a line."""
    title = rng.choice(["Practice sheet", "Warm-up", "Mental maths", "Drill", "Homework check"])
    n = rng.randint(12, 20)
    return title + "\n" + "\n".join(drill_line(rng) for _ in range(n)) + "<|endoftext|>"


def cmd_corpus(a):
    rng = random.Random(a.seed)
    banned = read_questions(a.exclude)
    with open(a.out, "w") as f:
        n = 0
        while n < a.n:
            if rng.random() < a.drill:
                f.write(json.dumps({"text": drill(rng)}) + "\n")
                n += 1
                continue
            si, q, lines, ans = make_problem(rng)
            if q in banned:
                continue
            f.write(json.dumps({"text": document(rng, si, q, lines, ans)}) + "\n")
            n += 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("problems")
    pp.add_argument("--seed", type=int, required=True)
    pp.add_argument("--n", type=int, required=True)
    pp.add_argument("--exclude", nargs="*", default=[])
    pp.add_argument("--out", required=True)
    pp.add_argument("--working", choices=["terse", "named"], default="named", help="how working lines are written")
    pc = sub.add_parser("corpus")
    pc.add_argument("--seed", type=int, required=True)
    pc.add_argument("--n", type=int, required=True)
    pc.add_argument("--drill", type=float, default=0.25, help="share of practice sheets")
    pc.add_argument("--exclude", nargs="*", default=[])
    pc.add_argument("--out", required=True)
    pc.add_argument("--working", choices=["terse", "named"], default="named", help="how working lines are written")
    a = p.parse_args()
    global WORKING
    WORKING = a.working
    {"problems": cmd_problems, "corpus": cmd_corpus}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
