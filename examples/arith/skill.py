#!/usr/bin/env python3
"""Where a model's answers go wrong: reads lr-eval score's results.jsonl
(one line per problem: prediction, correct) and prints the share of answers
that show working (at least one "a+b=c" / "a-b=c" / "a*b=c" line before any
run-on "Question:") and the share of those equations that are right.

  skill.py DIR/results.jsonl [LABEL]
"""
import json
import re
import sys

EQ = re.compile(r"(\d+)([+\-*])(\d+)=(\d+)")


def main():
    path = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else path
    n = worked = right = eqs = correct = 0
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
    print(f"{label}: {correct}/{n} correct; {worked}/{n} answers show working; "
          f"{right}/{eqs} equations in the working right")


if __name__ == "__main__":
    main()
