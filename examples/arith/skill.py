#!/usr/bin/env python3
"""Where a model's answers go wrong: reads lr-eval score's results.jsonl
(one line per problem: prediction, correct) and prints the share of answers
that show working (at least one "a+b=c" / "a-b=c" / "a*b=c" line before any
run-on "Question:") and the share of those equations that are right.
With the problems' file it also prints the share of operands that are
numbers of the question (2 and 3 for "doubles" and "triples") or results of an earlier line of the same answer
(an operand from nowhere is a misread or invented number), and the share
of worked answers whose operands all are, and sorts the wrong answers by
kind: run-on (a "Question:" after the answer), bare (no working), fewer or
more equations than the gold working has, or as many but a slip in one.

  skill.py DIR/results.jsonl [LABEL [PROBLEMS.jsonl]]
"""
import json
import re
import sys

EQ = re.compile(r"(\d+)([+\-*])(\d+)=(\d+)")


def main():
    path = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else path
    questions = golds = None
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            rows = [json.loads(line) for line in f]
        questions = [r["question"] for r in rows]
        golds = [len(EQ.findall(r["answer"])) for r in rows]
    n = worked = right = eqs = correct = 0
    ops = sourced = clean = 0
    kinds = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            n += 1
            correct += bool(r.get("correct"))
            text = (r.get("prediction") or "").split("\n\nQuestion")[0]
            found = EQ.findall(text)
            worked += bool(found)
            for a, op, b, c in found:
                eqs += 1
                x, y = int(a), int(b)
                right += (x + y if op == "+" else x - y if op == "-" else x * y) == int(c)
            if questions is not None and found:
                q = questions[int(r["id"].rsplit(":", 1)[1])]
                known = set(re.findall(r"\d+", q))
                known |= {w for w, word in (("2", "doubles"), ("3", "triples")) if word in q}
                ok = True
                for a, op, b, c in found:
                    for v in (a, b):
                        ops += 1
                        sourced += v in known
                        ok = ok and v in known
                    known.add(c)
                clean += ok
            if golds is not None and not r.get("correct"):
                g = golds[int(r["id"].rsplit(":", 1)[1])]
                k = ("run-on" if "\n\nQuestion" in (r.get("prediction") or "") else "bare" if not found
                     else "fewer" if len(found) < g else "more" if len(found) > g else "slip")
                kinds[k] = kinds.get(k, 0) + 1
    line = (f"{label}: {correct}/{n} correct; {worked}/{n} answers show working; "
            f"{right}/{eqs} equations in the working right")
    if questions is not None:
        line += f"; {sourced}/{ops} operands from the question or an earlier line; {clean}/{worked} worked answers with all of them so"
        line += "; wrong: " + ", ".join(f"{k} {kinds.get(k, 0)}" for k in ("bare", "fewer", "slip", "more", "run-on"))
    print(line)


if __name__ == "__main__":
    main()
