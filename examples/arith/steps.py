#!/usr/bin/env python3
"""What the selected steps of a method run are: reads lr-dump's JSON lines of
an `example` stream (lr-contrast's output) on stdin and prints the share of
steps whose target's heaviest token is a digit, a letter, punctuation, a
space or newline, or a merged/special token, and the share of steps at the
start of a line of the answer (its first token, or the token after a
newline), where the answer's form is chosen: work the next step or give the
answer.

  bin/lr-dump build/demo/lightreasoner/examples.lrs | steps.py [LABEL [EXPERT.jsonl]]

With EXPERT.jsonl, lr-dump's lines of the same stage's `--target expert`
stream (the w/o Contrast ablation: the same steps, the expert's own
distribution on the mask), it also counts, at the kept line starts, the
kind of the expert's heaviest token against the target's: the next line of
working (a verb of the question or a digit), the start of a final answer
(`T`he answer, `#`###, `\\`boxed) or other.

Ids below 256 are this world's byte symbols, one id per byte value (the
vocabulary of lr-mkmodel, README.md "Tokenizer").
"""
import json
import sys

# first tokens of a final answer (The answer, ####, \\boxed) and of a line
# of working (gets, gives, buys, triples/doubles, or an equation's digit)
ANSWER = set(map(ord, "T#\\"))
WORKING = set(map(ord, "gbtd0123456789"))


def kind(t):
    if t >= 256:
        return "merged/special"
    if 48 <= t <= 57:
        return "digit"
    if t in (10, 32):
        return "space/newline"
    return "letter" if chr(t).isalpha() else "punctuation"


def heaviest(r):
    w = r["weights"]
    return r["target_ids"][max(range(len(w)), key=w.__getitem__)]


def examples(f):
    for line in f:
        r = json.loads(line)
        if "target_ids" in r:  # not the header nor the end line
            yield r


def form(t):
    if t in ANSWER:
        return "answer"
    return "working" if t in WORKING else "other"


def main():
    label = sys.argv[1] if len(sys.argv) > 1 else "steps"
    expert = None
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            expert = {(r["id"], r["step"]): heaviest(r) for r in examples(f)}
    n = starts = 0
    kinds = {}
    pairs = {}
    for r in examples(sys.stdin):
        n += 1
        t = heaviest(r)
        kinds[kind(t)] = kinds.get(kind(t), 0) + 1
        start = r["step"] == 1 or r["context"][-1] == 10
        starts += start
        if start and expert is not None:
            e = expert.get((r["id"], r["step"]))
            if e is None:
                sys.exit(f"{label}: {sys.argv[2]}: no record for {r['id']} step {r['step']}")
            p = f"{form(e)} -> {form(t)}"
            pairs[p] = pairs.get(p, 0) + 1
    if not n:
        sys.exit(f"{label}: no example records on stdin")
    shares = ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    print(f"{label}: {n} steps; {shares}; at a line start {100 * starts / n:.1f}%")
    if expert is not None:
        print(f"{label}: at the kept line starts, expert -> target: "
              + ", ".join(f"{p} {c}" for p, c in sorted(pairs.items(), key=lambda pc: -pc[1])))


if __name__ == "__main__":
    main()
