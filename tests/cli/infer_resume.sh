# lr-infer -o FILE resumes only the same run: an interrupted output
# (FILE.part) rerun with any setting that alters the output is refused,
# exit 2, naming the setting, with nothing appended and no FILE; the same
# command continues it to the uninterrupted run's records, also after
# SIGINT/SIGTERM mid-run (exit 130, FILE.part kept, no FILE).
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/m" --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 32 > /dev/null
mkdir -p "$T/gsm8k"
for i in $(seq 0 59); do printf '{"question": "What is %d plus %d?", "answer": "so #### %d"}\n' $i $i $((2 * i)); done \
    > "$T/gsm8k/train.jsonl"
for i in $(seq 0 9); do printf '{"question": "Name %d.", "answer": "#### %d"}\n' $i $i; done > "$T/gsm8k/test.jsonl"
records() { "$B/lr-dump" "$1" | sed 1d; } # every record and the end line, not the header

RUN=(--model "$T/m" --data "$T/gsm8k/train.jsonl" --limit 6 --max-new-tokens 5 --batch 1)
"$B/lr-infer" "${RUN[@]}" -o "$T/full.lrs" 2> /dev/null
[ ! -e "$T/full.lrs.part" ] || die "a complete run left FILE.part"

# an interrupted run's output: the first two thirds of the complete one
cut_part() {
    local sz; sz=$(stat -c %s "$T/full.lrs")
    rm -f "$T/r.lrs"
    head -c $((sz * 2 / 3)) "$T/full.lrs" > "$T/r.lrs.part"
    cp "$T/r.lrs.part" "$T/saved.part"
}
refused() { # SETTING ARGS...: resuming r.lrs with ARGS is refused naming SETTING
    local what=$1; shift
    cut_part
    expect_fail 2 "$B/lr-infer" "$@" -o "$T/r.lrs"
    case "$LAST_ERR" in *"setting \"$what\" differs"*r.lrs.part*) ;; *) die "$what: message: $LAST_ERR" ;; esac
    cmp -s "$T/r.lrs.part" "$T/saved.part" || die "$what: the interrupted output was changed"
    [ ! -e "$T/r.lrs" ] || die "$what: FILE written"
}
refused max_new_tokens "${RUN[@]}" --max-new-tokens 8
refused input --model "$T/m" --data "$T/gsm8k/test.jsonl" --limit 6 --max-new-tokens 5 --batch 1
refused mode --model "$T/m" --follow "$T/full.lrs" --batch 1
refused seed "${RUN[@]}" --seed 3
refused temperature "${RUN[@]}" --temperature 0.7
refused preset "${RUN[@]}" --preset raw
refused top_k_max "${RUN[@]}" --top-k-max 16
refused shard "${RUN[@]}" --shard 1/2
refused limit "${RUN[@]}" --limit 7
# the same path with other contents is other data
cp "$T/gsm8k/train.jsonl" "$T/train.saved"
sed -i '1s/What/How much/' "$T/gsm8k/train.jsonl"
refused input_hash "${RUN[@]}"
cp "$T/train.saved" "$T/gsm8k/train.jsonl"

# the same run resumes, to the uninterrupted run's records, and FILE appears
cut_part
"$B/lr-infer" "${RUN[@]}" -o "$T/r.lrs" 2> "$T/resume.err"
grep -q "resuming" "$T/resume.err" || die "no resume message: $(cat "$T/resume.err")"
cmp <(records "$T/full.lrs") <(records "$T/r.lrs") || die "resumed run differs from the uninterrupted one"
[ ! -e "$T/r.lrs.part" ] || die "FILE.part left after completion"

# a complete FILE: the same command continues it (nothing to redo), another
# run replaces it once complete
"$B/lr-infer" "${RUN[@]}" -o "$T/r.lrs" 2> "$T/again.err"
grep -q "holds this run" "$T/again.err" && grep -q ": 0 problems written" "$T/again.err" \
    || die "rerun of a complete output: $(cat "$T/again.err")"
[ "$("$B/lr-dump" --count "$T/r.lrs")" = 6 ] || die "rerun of a complete output added records"
"$B/lr-infer" "${RUN[@]}" --max-new-tokens 3 -o "$T/r.lrs" 2> /dev/null
"$B/lr-dump" "$T/r.lrs" | sed '1d;$d' | jq -se 'all(.tokens|length <= 3)' > /dev/null || die "another run did not replace FILE"
[ "$("$B/lr-dump" --header "$T/r.lrs" | jq .params.max_new_tokens)" = 3 ] || die "replaced FILE: header"
[ "$("$B/lr-dump" --count "$T/r.lrs")" = 6 ] || die "replaced FILE: records"

# signals mid-run: exit 130, FILE.part kept, no FILE; reruns resume
BIG=(--model "$T/m" --data "$T/gsm8k/train.jsonl" --max-new-tokens 24 --batch 1)
"$B/lr-infer" "${BIG[@]}" -o "$T/u.lrs" 2> /dev/null
interrupt() { # SIGNAL: start the run, wait for two resume points, send SIGNAL
    local try pid s0 s rc
    # a busy machine can let the short run end between two polls, before
    # the signal: that try tests nothing, so it starts again from scratch
    for try in 1 2 3 4 5; do
        rm -f "$T/s.lrs" "$T/s.lrs.part"
        "$B/lr-infer" "${BIG[@]}" -o "$T/s.lrs" 2> /dev/null &
        pid=$! s0=0
        for _ in $(seq 1 1000); do
            kill -0 "$pid" 2> /dev/null || break
            s=$(stat -c %s "$T/s.lrs.part" 2> /dev/null || echo 0)
            if [ "$s0" = 0 ]; then s0=$s; elif [ "$s" -gt "$s0" ]; then break; fi
            sleep 0.02
        done
        kill -"$1" "$pid" 2> /dev/null || true
        set +e; wait "$pid"; rc=$?; set -e
        # the signal came too late: the run had ended (no such process, or
        # a zombie not yet reaped: exit 0), or had renamed FILE into place
        # and was leaving (exit 130): either way FILE is the whole run's,
        # the uninterrupted one's records, and this try tested nothing
        if [ -e "$T/s.lrs" ] && { [ "$rc" = 0 ] || [ "$rc" = 130 ]; } && [ ! -e "$T/s.lrs.part" ]; then
            cmp -s <(records "$T/u.lrs") <(records "$T/s.lrs") ||
                die "SIG$1: FILE exists after an interrupted run (exit $rc), and is not the whole run's"
            echo "SIG$1: try $try: the run ended before the signal (exit $rc), again"
            continue
        fi
        [ "$rc" = 130 ] || die "SIG$1 mid-run: exit $rc (wanted 130)"
        [ ! -e "$T/s.lrs" ] || die "SIG$1: FILE exists after an interrupted run"
        [ -s "$T/s.lrs.part" ] || die "SIG$1: FILE.part removed"
        return 0
    done
    die "SIG$1: the run ended before the signal in all 5 tries"
}
echo "signal test: 60 problems x 24 tokens, batch 1"
interrupt INT
# each signal from a fresh start (interrupt removes INT's FILE.part):
# resuming it, the run had only a few milliseconds of problems left, and
# could end between two polls
interrupt TERM
"$B/lr-infer" "${BIG[@]}" -o "$T/s.lrs" 2> "$T/s.err"
written=$(sed -n 's/.*: \([0-9]*\) problems written.*/\1/p' "$T/s.err")
[ -n "$written" ] && [ "$written" -lt 60 ] || die "the rerun did not resume: $(cat "$T/s.err")"
cmp <(records "$T/u.lrs") <(records "$T/s.lrs") || die "interrupted and resumed run differs from the uninterrupted one"
[ "$("$B/lr-dump" --count "$T/s.lrs")" = 60 ] || die "resumed run: wrong record count"
echo ok
