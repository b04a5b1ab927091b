# lr-dump over the stream framing: exact round trips, and every truncation
# and byte flip of a small stream is refused with exit 2, one stderr line and
# no lrs_end line in the JSON (so nothing looks complete).
source "$LR_ROOT/tests/lib.sh"
D=$LR_BIN/lr-dump
fx=$LR_ROOT/tests/fixtures/dist_small.jsonl
s=$LR_TMP/s.lrs

"$D" --from-json "$fx" > "$s"
"$D" "$s" > "$LR_TMP/back.jsonl"
cmp "$LR_TMP/back.jsonl" <("$D" "$s") || die "dump not deterministic"
"$D" --from-json < "$LR_TMP/back.jsonl" | cmp - "$s" || die "JSON -> stream -> JSON -> stream not byte-identical"
[ "$("$D" --count "$s")" = 2 ] || die "--count"
[ "$("$D" --header "$s" | wc -l)" = 1 ] || die "--header"
[ "$("$D" --head 1 "$s" | wc -l)" = 2 ] || die "--head 1"
"$D" --header "$s" | jq -e '.kind == "dist" and .tokenizer.hash == "abcd"' > /dev/null || die "header fields"
"$D" "$s" | sed -n 3p | jq -e '.text == "héllo \"q\" \n"' > /dev/null || die "string escaping"
"$D" "$s" | sed -n 2p | jq -e '.top_lp[4] == "-inf" and .top_ids == [10,20,11,12,5]' > /dev/null || die "typed arrays"
"$D" --help | grep -q "usage: lr-dump" || die "--help"
expect_fail 1 "$D" --bogus

# concatenation: two segments read as one stream
cat "$s" "$s" > "$LR_TMP/ss.lrs"
[ "$("$D" --count "$LR_TMP/ss.lrs")" = 4 ] || die "concatenated count"

# truncation at every byte offset
size=$(stat -c %s "$s")
for ((n = 0; n < size; n++)); do
    head -c "$n" "$s" > "$LR_TMP/cut.lrs"
    expect_fail 2 "$D" "$LR_TMP/cut.lrs"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "cut $n: more than one stderr line"
    grep -q lrs_end "$LR_TMP/stdout.$$" && die "cut $n: output claims completeness"
    case "$LAST_ERR" in *cut.lrs*record*) ;; *) die "cut $n: message lacks file/record: $LAST_ERR" ;; esac
done
# ... and of a concatenation (cuts inside the second segment)
size2=$(stat -c %s "$LR_TMP/ss.lrs")
for ((n = size + 1; n < size2; n += 7)); do
    head -c "$n" "$LR_TMP/ss.lrs" | { set +e; "$D" > "$LR_TMP/o" 2>/dev/null; echo $? > "$LR_TMP/rc"; }
    [ "$(cat "$LR_TMP/rc")" = 2 ] || die "concat cut $n: exit $(cat "$LR_TMP/rc")"
done

# every single-byte flip: refused, or (a flip in a bit zstd ignores) the same data
good=$("$D" "$s")
for ((n = 0; n < size; n++)); do
    cp "$s" "$LR_TMP/flip.lrs"
    b=$(od -An -tu1 -j "$n" -N1 "$s" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 0x5a)))" | dd of="$LR_TMP/flip.lrs" bs=1 seek="$n" conv=notrunc status=none
    set +e; out=$("$D" "$LR_TMP/flip.lrs" 2>"$LR_TMP/err"); rc=$?; set -e
    if [ "$rc" = 0 ]; then [ "$out" = "$good" ] || die "flip at $n: accepted with different content"
    else [ "$rc" = 2 ] || die "flip at $n: exit $rc"; [ "$(wc -l < "$LR_TMP/err")" = 1 ] || die "flip at $n: stderr"; fi
done

# from-json refuses bad input and writes no end marker
expect_fail 2 "$D" --from-json <(head -n 2 "$fx")            # no lrs_end line
expect_fail 2 "$D" --from-json <(echo '{"lrs": 1')            # malformed JSON
expect_fail 2 "$D" --from-json <(sed '2s/"tail"/"tale"/' "$fx") # missing required field
case "$LAST_ERR" in *'line 2: field "tail": missing'*) ;; *) die "message: $LAST_ERR" ;; esac
expect_fail 2 "$D" --from-json <(sed '1s/"dist"/"disco"/' "$fx")
expect_fail 2 "$D" --from-json <(sed '$s/2/3/' "$fx")
set +e; "$D" --from-json <(head -n 2 "$fx") > "$LR_TMP/part.lrs" 2>/dev/null; set -e
expect_fail 2 "$D" "$LR_TMP/part.lrs"
case "$LAST_ERR" in *"no end marker"*) ;; *) die "partial stream: $LAST_ERR" ;; esac
expect_fail 2 "$D" < /dev/null
echo ok
