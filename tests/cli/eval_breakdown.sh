# lr-eval score: rows with a subject and a level (MATH-500's layout) get
# accuracy by subject and by level in summary.json and summary.md; rows
# without them (gsm8k) get neither.
source "$LR_ROOT/tests/lib.sh"
E=$LR_BIN/lr-eval T=$LR_TMP
mkdir -p "$T/d/math500" "$T/d/gsm8k"
row() { printf '{"problem": "P%s", "answer": "%s", "subject": "%s", "level": %s, "unique_id": "u%s"}\n' "$1" "$2" "$3" "$4" "$1"; }
{ row 0 1 Algebra 1; row 1 2 Algebra 2; row 2 3 Geometry 2; row 3 4 Geometry 5; row 4 5 "Number Theory" 10; } > "$T/d/math500/test.jsonl"
printf '{"question": "Q", "answer": "x #### 7"}\n' > "$T/d/gsm8k/test.jsonl"
# right on problems 0, 2, 4; wrong on 1; problem 3 has no prediction
for p in "0 1" "1 9" "2 3" "4 5"; do set -- $p
    printf '{"id": "math500/test:%s", "prediction": "\\\\boxed{%s}"}\n' "$1" "$2"; done > "$T/pred.jsonl"
echo '{"id": "gsm8k/test:0", "prediction": "The answer is 7."}' >> "$T/pred.jsonl"
"$E" score --pred "$T/pred.jsonl" --data-dir "$T/d" --out-dir "$T/out" 2> /dev/null
j=$T/out/summary.json
jq -e '.benchmarks.math500.by_subject == {
    "Algebra": {"total": 2, "correct": 1, "acc": 50.0},
    "Geometry": {"total": 2, "correct": 1, "acc": 50.0},
    "Number Theory": {"total": 1, "correct": 1, "acc": 100.0}}' "$j" > /dev/null || die "by_subject: $(jq -c .benchmarks.math500.by_subject "$j")"
jq -e '.benchmarks.math500.by_level | keys_unsorted == ["1", "2", "5", "10"] and .["2"] == {"total": 2, "correct": 1, "acc": 50.0}
    and .["5"].correct == 0' "$j" > /dev/null || die "by_level: $(jq -c .benchmarks.math500.by_level "$j")"
jq -e '.benchmarks.gsm8k | has("by_subject") or has("by_level") | not' "$j" > /dev/null || die "gsm8k got a breakdown"
grep -q '^math500 by subject$' "$T/out/summary.md" || die "summary.md: no subject table"
grep -qF '| Number Theory | 1 | 1 | 100.0 |' "$T/out/summary.md" || die "summary.md subject row"
grep -qF '| 10 | 1 | 1 | 100.0 |' "$T/out/summary.md" || die "summary.md level row"
# MATH's own "Level 3" strings read as levels too
printf '{"problem": "P", "answer": "1", "type": "Algebra", "subject": "Algebra", "level": "Level 3"}\n' > "$T/d/math500/lv.jsonl"
echo '{"id": "math500/lv:0", "prediction": "\\boxed{1}"}' > "$T/p2.jsonl"
"$E" score --pred "$T/p2.jsonl" --data "$T/d/math500/lv.jsonl" --out-dir "$T/o2" 2> /dev/null
jq -e '.benchmarks.math500.by_level == {"3": {"total": 1, "correct": 1, "acc": 100.0}}' "$T/o2/summary.json" > /dev/null || die "Level 3"
echo ok
