# lr-kl and lr-contrast against the NumPy transcription of METHOD.md
# (tests/ref/kl_streams.py wrote the inputs and the expected KL per step and
# targets per selected step), the selection controls, and bad inputs: exit 2,
# one stderr line, and no end marker in whatever was written.
source "$LR_ROOT/tests/lib.sh"
D=$LR_BIN/lr-dump K=$LR_BIN/lr-kl C=$LR_BIN/lr-contrast
G=$LR_ROOT/tests/golden
E=$LR_TMP/e.lrs A=$LR_TMP/a.lrs
"$D" --from-json "$G/kl_expert.jsonl" > "$E"
"$D" --from-json "$G/kl_amateur.jsonl" > "$A"

# close_tsv GOT WANT: same (idx, step) rows in the same order, values within 1e-6
close_tsv() {
    [ "$(wc -l < "$1")" = "$(wc -l < "$2")" ] || die "$1: $(wc -l < "$1") rows, want $(wc -l < "$2")"
    paste "$1" "$2" | awk -F'\t' '{ if ($1 != $4 || $2 != $5) { print "row " NR ": " $1 " " $2 " vs " $4 " " $5; bad = 1 }
        d = $3 - $6; if (d < 0) d = -d; if (d > 1e-6 + 1e-6 * ($6 < 0 ? -$6 : $6)) { print "row " NR ": kl " $3 " vs " $6; bad = 1 } }
        END { exit bad }' || die "$1 differs from $2"
}
kl_tsv() { "$D" "$1" | jq -r 'select(.kl != null) | [.idx, .step, .kl] | @tsv'; }

# selection at the default beta 0.4, and beta 0 (every step t >= 1)
"$K" "$E" "$A" --stats "$LR_TMP/stats.tsv" > "$LR_TMP/kl.lrs" 2> "$LR_TMP/err"
kl_tsv "$LR_TMP/kl.lrs" > "$LR_TMP/got.tsv"
awk -F'\t' '$3 >= 0.4' "$G/kl_expected.tsv" > "$LR_TMP/want.tsv"
close_tsv "$LR_TMP/got.tsv" "$LR_TMP/want.tsv"
nsel=$(wc -l < "$LR_TMP/want.tsv")
grep -q "12 problems, 135 steps seen (t >= 1), $nsel kept" "$LR_TMP/err" || die "summary: $(cat "$LR_TMP/err")"
grep -q "3 exact (full rows)" "$LR_TMP/err" || die "full rows not used: $(cat "$LR_TMP/err")"
awk -F'\t' 'NR > 1 { s += $3; k += $4 } END { if (s != 135 || k != '"$nsel"') exit 1 }' "$LR_TMP/stats.tsv" || die "--stats totals"
"$K" -q --beta 0 "$E" "$A" > "$LR_TMP/all.lrs"
kl_tsv "$LR_TMP/all.lrs" > "$LR_TMP/got.tsv"
close_tsv "$LR_TMP/got.tsv" "$G/kl_expected.tsv"
"$D" "$LR_TMP/all.lrs" | jq -se 'map(select(.step != null)) | all(.step >= 1 and (.context | length) == .prompt_len + .step)' > /dev/null \
    || die "context is not prompt + expert prefix"
"$D" "$LR_TMP/all.lrs" | jq -se 'map(select(.step != null)) | all(.exact == (.idx == 3) and (.exact == (.kl_err == 0)))' \
    > /dev/null || die "exact flag: only problem 3 has full rows on both sides"
"$D" --header "$LR_TMP/kl.lrs" | jq -e '.kind == "kl" and .model.name == "expert" and .tokenizer.hash == "t0k3n"
    and .params.vocab == 296 and .params.beta == 0.4 and .params.amateur_model.name == "amateur"' > /dev/null || die "kl header"

# stdin for either side gives the same records
"$K" -q - "$A" < "$E" | "$D" | sed 1d > "$LR_TMP/p1"
"$K" -q "$E" - < "$A" | "$D" | sed 1d > "$LR_TMP/p2"
"$D" "$LR_TMP/kl.lrs" | sed 1d | cmp - "$LR_TMP/p1" || die "expert on stdin"
cmp "$LR_TMP/p1" "$LR_TMP/p2" || die "amateur on stdin"

# lr-contrast: every target kind against the transcription
for tk in contrast expert onehot; do
    "$C" -q --target "$tk" "$LR_TMP/kl.lrs" > "$LR_TMP/ex.lrs"
    "$D" "$LR_TMP/ex.lrs" | jq -r 'select(.weights != null) | [.idx, .step, (.target_ids | map(tostring) | join(",")),
        (.weights | map(tostring) | join(","))] | @tsv' > "$LR_TMP/ex.tsv"
    awk -F'\t' -v t="$tk" '$3 == t { print $1 "\t" $2 "\t" $4 "\t" $5 }' "$G/kl_examples.tsv" > "$LR_TMP/exw.tsv"
    [ "$(wc -l < "$LR_TMP/ex.tsv")" = "$nsel" ] || die "$tk: $(wc -l < "$LR_TMP/ex.tsv") examples"
    paste "$LR_TMP/ex.tsv" "$LR_TMP/exw.tsv" | awk -F'\t' '{
        if ($1 != $5 || $2 != $6 || $3 != $7) { print "row " NR ": " $1 " " $2 " ids " $3 " vs " $5 " " $6 " " $7; bad = 1 }
        n = split($4, g, ","); split($8, w, ","); s = 0
        for (i = 1; i <= n; i++) { d = g[i] - w[i]; if (d < 0) d = -d; if (d > 1e-6) { print "row " NR ": w " g[i] " vs " w[i]; bad = 1 }; s += g[i] }
        if (s < 1 - 1e-6 || s > 1 + 1e-6) { print "row " NR ": weights sum " s; bad = 1 } }
        END { exit bad }' || die "$tk targets differ"
done
"$D" --header "$LR_TMP/ex.lrs" | jq -e '.kind == "example" and .params.target == "onehot" and .params.alpha == 0.2
    and .params.kl_params.beta == 0.4 and .model.name == "expert"' > /dev/null || die "example header"
"$C" -q --alpha 1 "$LR_TMP/kl.lrs" | "$D" | jq -se 'map(select(.weights != null)) | length > 0 and all((.target_ids | length) >= 1)' > /dev/null \
    || die "--alpha 1"

# the controls: same number of steps, random (seeded) or lowest KL
"$K" -q --select random --seed 5 "$E" "$A" > "$LR_TMP/r5.lrs"
"$K" -q --select random --seed 5 "$E" "$A" | cmp - "$LR_TMP/r5.lrs" || die "random selection not reproducible"
"$K" -q --select random --seed 6 "$E" "$A" > "$LR_TMP/r6.lrs"
kl_tsv "$LR_TMP/r5.lrs" > "$LR_TMP/r5.tsv"
kl_tsv "$LR_TMP/r6.lrs" > "$LR_TMP/r6.tsv"
[ "$(wc -l < "$LR_TMP/r5.tsv")" = "$nsel" ] || die "random keeps $(wc -l < "$LR_TMP/r5.tsv"), want $nsel"
cmp -s "$LR_TMP/r5.tsv" "$LR_TMP/r6.tsv" && die "seeds 5 and 6 chose the same steps"
cmp -s "$LR_TMP/r5.tsv" <(kl_tsv "$LR_TMP/kl.lrs") && die "random selection equals KL selection"
join -t, <(cut -f1,2 "$LR_TMP/r5.tsv" | tr '\t' ':' | sort) <(cut -f1,2 "$G/kl_expected.tsv" | tr '\t' ':' | sort) \
    | wc -l | grep -qx "$nsel" || die "random chose steps that do not exist"
"$K" -q --select lowest "$E" "$A" > "$LR_TMP/low.lrs"
kl_tsv "$LR_TMP/low.lrs" | sort -t$'\t' -k1,1n -k2,2n > "$LR_TMP/got.tsv"
sort -t$'\t' -k3,3g "$G/kl_expected.tsv" | head -n "$nsel" | sort -t$'\t' -k1,1n -k2,2n > "$LR_TMP/want.tsv"
close_tsv "$LR_TMP/got.tsv" "$LR_TMP/want.tsv"
expect_fail 1 "$K" --select random - "$A" < "$E"
case "$LAST_ERR" in *"give files"*) ;; *) die "pipe with --select random: $LAST_ERR" ;; esac

# usage
"$K" --help | grep -q "usage: lr-kl" || die "lr-kl --help"
"$C" --help | grep -q "usage: lr-contrast" || die "lr-contrast --help"
expect_fail 1 "$K" "$E"
expect_fail 1 "$K" - - < "$E"
expect_fail 1 "$K" --select lowest "$E" - < "$A"
expect_fail 1 "$K" --beta -1 "$E" "$A"
expect_fail 1 "$K" --select best "$E" "$A"
expect_fail 1 "$C" --target soft
expect_fail 1 "$C" --alpha 2

# bad_case NAME PATTERN FILE... : lr-kl on the files exits 2 with one stderr
# line matching PATTERN, and its output has no end marker
bad_case() {
    local name=$1 pat=$2; shift 2
    expect_fail 2 "$K" -o "$LR_TMP/bad.lrs" "$@"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "$name: more than one stderr line: $LAST_ERR"
    case "$LAST_ERR" in *$pat*) ;; *) die "$name: message: $LAST_ERR" ;; esac
    if [ -s "$LR_TMP/bad.lrs" ]; then
        set +e; "$D" "$LR_TMP/bad.lrs" > "$LR_TMP/bad.json" 2>/dev/null; local rc=$?; set -e
        [ "$rc" = 2 ] || die "$name: output stream looks complete"
    fi
}
mk() { # mk NAME JQ-FILTER-ON-AMATEUR-LINES : a modified amateur stream
    jq -c "$2" "$G/kl_amateur.jsonl" | "$D" --from-json > "$LR_TMP/$1.lrs"
}
mk nofull 'del(.full)' # full rows on one side only: the compact form
"$K" --beta 0 "$E" "$LR_TMP/nofull.lrs" 2> "$LR_TMP/err" | "$D" | jq -se 'map(select(.step != null)) | all(.exact | not)' \
    > /dev/null || die "exact with full rows on one side"
grep -q "0 exact" "$LR_TMP/err" || die "one-sided full rows: $(cat "$LR_TMP/err")"
mk tok 'if .lrs then .tokenizer.hash = "other" else . end'
bad_case tokenizer "tokenizers differ" "$E" "$LR_TMP/tok.lrs"
mk voc 'if .lrs then .model.vocab = 200 else . end'
bad_case vocab "vocabularies differ" "$E" "$LR_TMP/voc.lrs"
mk seq 'if .idx == 4 then .tokens[2] += 1 else . end'
bad_case tokens 'field "tokens": differ' "$E" "$LR_TMP/seq.lrs"
mk pr 'if .idx == 6 then .prompt[0] += 1 else . end'
bad_case prompt 'field "prompt"' "$E" "$LR_TMP/pr.lrs"
mk miss 'if .idx == 7 then empty elif .lrs_end then .lrs_end = 11 else . end'
bad_case missing "missing from" "$E" "$LR_TMP/miss.lrs"
"$K" --allow-missing "$E" "$LR_TMP/miss.lrs" 2> "$LR_TMP/err" > /dev/null
grep -q "11 problems.*missing: 1 only in $E, 0 only in" "$LR_TMP/err" || die "--allow-missing summary: $(cat "$LR_TMP/err")"
mk swap 'if .idx == 3 then .idx = 1 else . end'
bad_case order "problem order differs" "$E" "$LR_TMP/swap.lrs"
expect_fail 2 "$K" --allow-missing "$E" "$LR_TMP/swap.lrs"
case "$LAST_ERR" in *"increasing idx"*) ;; *) die "--allow-missing on unordered input: $LAST_ERR" ;; esac
# any common order joins (concatenated shards): both streams reversed
for s in expert amateur; do
    { sed -n 1p "$G/kl_$s.jsonl"; sed '1d;$d' "$G/kl_$s.jsonl" | tac; tail -n 1 "$G/kl_$s.jsonl"; } \
        | "$D" --from-json > "$LR_TMP/rev_$s.lrs"
done
"$K" -q "$LR_TMP/rev_expert.lrs" "$LR_TMP/rev_amateur.lrs" | "$D" | jq -r 'select(.kl != null) | [.idx, .step, .kl] | @tsv' \
    | sort -k1,1n -k2,2n > "$LR_TMP/rev.tsv"
kl_tsv "$LR_TMP/kl.lrs" | cmp - "$LR_TMP/rev.tsv" || die "reversed streams select other steps"
mk noref 'del(.ref_lp)'
bad_case follow "follow mode" "$E" "$LR_TMP/noref.lrs"
mk short 'if .idx == 9 then .ref_lp |= .[1:] else . end'
bad_case ref_lp 'field "ref_lp"' "$E" "$LR_TMP/short.lrs"
mk nan 'if .idx == 1 then .ref_tail[1] = 7 else . end'
bad_case tail "tail outside" "$E" "$LR_TMP/nan.lrs"
size=$(stat -c %s "$E")
for n in 20 $((size / 2)) $((size - 3)); do
    head -c "$n" "$E" > "$LR_TMP/cut.lrs"
    bad_case "cut $n" "cut.lrs" "$LR_TMP/cut.lrs" "$A"
done
# structural mutations of one record on either side: accepted (0) or refused
# with one line (2), never a crash (the ASan build turns memory errors into 1)
for side in expert amateur; do
    for m in '.k[1] = 0' '.k[1] = 100000' '.k = []' '.top_ids[3] = -5' '.top_ids[3] = 2000000000' \
             '.top_ids |= .[:-1]' '.top_lp[2] = 5' '.tail[2] = -1' '.tail = []' '.tokens = []' '.prompt = []' \
             '.tokens |= .[:-1]' '.full = [1]' '.ref_lp = []' '.ref_tail |= .[1:]' '.idx = -1' '.id = ""' \
             '.top_ids[1] = .top_ids[0]' '.k[2] = -1'; do
        jq -c "if .idx == 5 then $m else . end" "$G/kl_$side.jsonl" | "$D" --from-json > "$LR_TMP/mut.lrs" 2>/dev/null || continue
        if [ $side = expert ]; then set -- "$LR_TMP/mut.lrs" "$A"; else set -- "$E" "$LR_TMP/mut.lrs"; fi
        set +e; "$K" -q --beta 0 "$@" > /dev/null 2> "$LR_TMP/err"; rc=$?; set -e
        case $rc in
        0) ;;
        2) [ "$(wc -l < "$LR_TMP/err")" = 1 ] || die "$side $m: stderr: $(cat "$LR_TMP/err")" ;;
        *) cat "$LR_TMP/err" >&2; die "$side $m: exit $rc" ;;
        esac
    done
done
mkx() { jq -c "$2" "$G/kl_expert.jsonl" | "$D" --from-json > "$LR_TMP/$1.lrs"; }
mkx xid 'if .idx == 5 then .top_ids[-1] = 2000000000 else . end'
bad_case id-range 'xid.lrs: record 6: field "top_ids": problem "toy/train:5" step 10: token id outside' "$LR_TMP/xid.lrs" "$A"
mkx xdup 'if .idx == 5 then .top_ids[-1] = .top_ids[-2] else . end'
bad_case dup-ids 'field "top_ids": problem "toy/train:5" step 10: listed token ids not distinct' "$LR_TMP/xdup.lrs" "$A"
mkx xlp 'if .idx == 5 then .top_lp[-1] = 5 else . end'
bad_case lp-positive 'xlp.lrs: record 6: field "top_lp"' "$LR_TMP/xlp.lrs" "$A"
mk alp 'if .idx == 5 then .ref_lp[-1] = 5 else . end'
bad_case amateur-lp 'alp.lrs: record 6: field "ref_lp"' "$E" "$LR_TMP/alp.lrs"
bad_case expert-as-amateur "follow mode" "$E" "$E"  # the expert has no ref_lp
expect_fail 2 "$C" "$E"           # a dist stream is not a kl stream
head -c $(($(stat -c %s "$LR_TMP/kl.lrs") - 5)) "$LR_TMP/kl.lrs" > "$LR_TMP/klcut.lrs"
expect_fail 2 "$C" "$LR_TMP/klcut.lrs"
# a bad record after good ones: the partial output has no end marker
"$D" "$LR_TMP/kl.lrs" | jq -c 'if .step != null and .idx == 4 then .lp_a |= .[1:] else . end' \
    | "$D" --from-json > "$LR_TMP/klbad.lrs"
expect_fail 2 "$C" -o "$LR_TMP/exbad.lrs" "$LR_TMP/klbad.lrs"
case "$LAST_ERR" in *'field "lp_a"'*) ;; *) die "lr-contrast message: $LAST_ERR" ;; esac
[ -e "$LR_TMP/exbad.lrs" ] && die "lr-contrast after a bad record: -o output left under its final name"
ls "$LR_TMP" | grep -q 'exbad.lrs.part' && die "lr-contrast after a bad record: temporary left behind"
# on stdout (a pipe) the partial stream ends without its end marker
set +e; "$C" "$LR_TMP/klbad.lrs" 2>/dev/null | "$D" > "$LR_TMP/exbad.json" 2>/dev/null; rc=${PIPESTATUS[1]}; set -e
[ "$rc" = 2 ] || die "lr-contrast after a bad record: output looks complete (exit $rc)"
[ "$(grep -c target_ids "$LR_TMP/exbad.json")" -ge 1 ] || die "records before the bad one were not kept"
echo ok
