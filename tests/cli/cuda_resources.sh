# tests/cuda_resources.py on made-up ptxas reports and launch records: a
# clean set passes with the blocks NVIDIA's occupancy calculator gives;
# each kind of launch a card refuses (registers, shared memory, 48 KiB
# without an opt-in) or runs below what the code assumes,
# a spill, and either side missing a kernel fail with a line naming it;
# --card: a card's own figures that agree pass, and blocks below the
# calculator's or what the code relies on, or registers other than
# ptxas's, fail; cuda/launchlog.cu writes the record --card reads.
# (The check of the suite's own launches runs at the end of tests/run.sh.)
. "$LR_ROOT/tests/lib.sh"
occ=$LR_ROOT/build/cuda/occupancy
if [ ! -x "$occ" ]; then
    echo "SKIP: no build/cuda/occupancy (built with the real CUDA backend, where nvcc is found)"
    exit 0
fi
T=$LR_TMP
chk() { python3 "$LR_ROOT/tests/cuda_resources.py" "$occ" "$T/p" "$T/l" --table --src "$T/src" > "$T/out" 2> "$T/err"; }
entry() { # MANGLED REGS SMEM STORES LOADS
    printf "ptxas info    : Compiling entry function '%s' for 'sm_90'\n" "$1"
    printf "ptxas info    : Function properties for %s\n" "$1"
    printf "    0 bytes stack frame, %s bytes spill stores, %s bytes spill loads\n" "$4" "$5"
    if [ "$3" = 0 ]; then printf "ptxas info    : Used %s registers, used 1 barriers\n" "$2"
    else printf "ptxas info    : Used %s registers, used 1 barriers, %s bytes smem\n" "$2" "$3"; fi
}
setup() { # the clean set: three kernels of two files, each launched; k_private opts in past 48 KiB
    rm -rf "$T/p" "$T/l" "$T/src"; mkdir -p "$T/p" "$T/l" "$T/src"
    echo "    smem_optin(k_private, smem, opted);" > "$T/src/ops.cu"
    { entry _Z8k_simplePf 16 0 0 0; entry _ZN12_GLOBAL__N_19k_privateEv 128 0 0 0; } > "$T/p/ops.ptxas"
    entry _Z16attention_kernelILb1EEvv 75 37248 0 0 > "$T/p/attention.ptxas"
    printf '%s\n' "cuda/ops.cu k_simple 3 64 256 0" "cuda/ops.cu k_private 2 128 128 147712" > "$T/l/launches.a"
    echo "cuda/attention.cu attention_kernel<true> 5 128 128 0" > "$T/l/launches.b"
}
fails() { # WHAT PATTERN: the check fails with a line matching PATTERN
    if chk; then die "$1: passed"; fi
    grep -q -- "$2" "$T/err" || { cat "$T/err" >&2; die "$1: no line matching '$2'"; }
}

setup
chk || { cat "$T/err" >&2; die "the clean set failed"; }
# 256 threads of 16 registers: 8 blocks by threads (16 by registers); 128 x 128 registers and
# 147,712 + 1,024 bytes: one block, by shared memory; 75 registers and
# 37,248 bytes: 6 by each
grep -q '^| ops | `k_simple` | 64-256 | 16 | 0 | 0 | 0 | 8 | threads | 3 |' "$T/out" || { cat "$T/out" >&2; die "k_simple row"; }
grep -q '^| ops | `k_private` | 128 | 128 | 0 | 147712 | 0 | 1 | shared memory | 2 |' "$T/out" || die "k_private row"
grep -q '^| attention | `attention_kernel<true>` | 128 | 75 | 37248 | 0 | 0 | 6 | registers and shared memory | 5 |' "$T/out" ||
    die "attention row"
# two records of one kernel add their counts and keep the largest launch
echo "cuda/ops.cu k_simple 1 512 512 0" > "$T/l/launches.c"
chk || die "a second record failed"
grep -q '`k_simple` | 64-512 | 16 | 0 | 0 | 0 | 4 | threads | 4 |' "$T/out" || die "records not joined"

setup # one byte of static shared memory too many: 232,448 in all is the most a block has
echo "cuda/ops.cu k_private 1 128 128 232448" > "$T/l/launches.c"
{ entry _Z8k_simplePf 16 0 0 0; entry _ZN12_GLOBAL__N_19k_privateEv 128 1 0 0; } > "$T/p/ops.ptxas"
fails "shared memory" "k_private: a card refuses the launch"
setup # past 48 KiB without the opt-in: 128 static + 49,024 dynamic bytes pass, 8 more fail
echo "// smem_optin(k_privat, ...) is another kernel's" > "$T/src/ops.cu"
echo "cuda/ops.cu k_private 1 128 128 0" > "$T/l/launches.a"
echo "cuda/ops.cu k_simple 1 64 64 49024" > "$T/l/launches.c"
{ entry _Z8k_simplePf 16 128 0 0; entry _ZN12_GLOBAL__N_19k_privateEv 128 0 0 0; } > "$T/p/ops.ptxas"
chk || { cat "$T/err" >&2; die "49,152 bytes in all without an opt-in failed"; }
echo "cuda/ops.cu k_simple 1 64 64 49032" > "$T/l/launches.c"
fails "no opt-in" "k_simple: a card refuses the launch: 128 static + 49032 dynamic bytes of shared memory, past the 49152 a block gets without smem_optin"
setup # 1024 threads of 65 registers: more than 65,536 a block
{ entry _Z8k_simplePf 65 0 0 0; entry _ZN12_GLOBAL__N_19k_privateEv 128 0 0 0; } > "$T/p/ops.ptxas"
echo "cuda/ops.cu k_simple 1 1024 1024 0" > "$T/l/launches.c"
fails "registers" "k_simple: a card refuses the launch: 1024 threads x 65 registers"
setup # att_splits assumes two blocks an SM of the split attention
entry _Z16attention_kernelILb1EEvv 75 120000 0 0 > "$T/p/attention.ptxas"
fails "min blocks" "attention_kernel<true>: 1 block(s) an SM (limited by shared memory), but att_splits"
setup
{ entry _Z8k_simplePf 16 0 4 4; entry _ZN12_GLOBAL__N_19k_privateEv 128 0 0 0; } > "$T/p/ops.ptxas"
fails "spill" "k_simple: 4 bytes of spill stores"
setup
rm "$T/l/launches.b"
fails "unlaunched" "attention_kernel<true>: no test launched it"
setup
echo "cuda/ops.cu k_other 1 32 32 0" > "$T/l/launches.c"
fails "uncompiled" "k_other: launched by the tests but not in ptxas's report"
setup
echo "cuda/ops.cu k_simple 1 32" > "$T/l/launches.c"
expect_fail 2 python3 "$LR_ROOT/tests/cuda_resources.py" "$occ" "$T/p" "$T/l"
[[ $LAST_ERR == *"launches.c:1: want 6 fields, got 4" ]] || die "bad record: $LAST_ERR"
expect_fail 2 python3 "$LR_ROOT/tests/cuda_resources.py" "$occ" "$T/p" "$T/l" --src "$T/p"
[[ $LAST_ERR == *"no .cu files (--src)" ]] || die "--src without sources: $LAST_ERR"
echo "cuda/ops.cu k_simple 1 32 x 0" > "$T/l/launches.c"
expect_fail 2 python3 "$LR_ROOT/tests/cuda_resources.py" "$occ" "$T/p" "$T/l"
[[ $LAST_ERR == *"launches.c:1: a count or size that is not an integer" ]] || die "bad number: $LAST_ERR"

# --card: what a card reported (cuda/launchlog.h's card.* files) beside
# ptxas and the calculator. The clean set's card agrees: registers, static
# shared memory and blocks as the calculator's for the same launch.
cardchk() { python3 "$LR_ROOT/tests/cuda_resources.py" --card "$occ" "$T/p" "$T/l" "$T/ct.md" > "$T/cout" 2> "$T/cerr"; }
card() { # the clean set's card, BLOCKS of attention_kernel<true> and k_simple's REGISTERS
    { echo "#device 9.0 sms=132 regs_per_sm=65536 smem_per_sm=233472 smem_optin=232448 NVIDIA H200"
      echo "cuda/ops.cu k_simple 3 64 256 0 ${2:-16} 0 0 1024 8"
      echo "cuda/ops.cu k_private 2 128 128 147712 128 0 0 1024 1"
      echo "cuda/attention.cu attention_kernel<true> 5 128 128 0 75 37248 0 1024 $1"; } > "$T/l/card.x"
}
setup; card 6
cardchk || { cat "$T/cerr" >&2; die "--card: the agreeing card failed"; }
grep -q '^occupancy kernels=3 agree=3 differ="none" relied="attention_kernel<true> 6" other_binary="none" device="9.0 .*NVIDIA H200" result=ok$' "$T/cout" ||
    die "--card line: $(cat "$T/cout")"
grep -q '^| attention | `attention_kernel<true>` | 128 | 0 | 75 / 75 | 0 | 6 | 6 | registers and shared memory | ok |' "$T/ct.md" ||
    { cat "$T/ct.md" >&2; die "--card table row"; }
# the card holds fewer blocks than the calculator says, and fewer than att_splits relies on
setup; card 1
if cardchk; then die "--card: 1 block against the calculator's 6 passed"; fi
grep -q 'attention_kernel<true>: 1 block(s) an SM on the card, 6 by the calculator' "$T/cerr" || die "--card differ: $(cat "$T/cerr")"
grep -q 'attention_kernel<true>: 1 block(s) an SM on the card, but att_splits' "$T/cerr" || die "--card min blocks: $(cat "$T/cerr")"
grep -q 'differ="attention_kernel<true> 6/1" .* result=FAIL$' "$T/cout" || die "--card FAIL line: $(cat "$T/cout")"
# a second process's record of a kernel disagreeing with the calculator at
# its own launch is found, though another record has fewer blocks
setup; card 6
echo "cuda/ops.cu k_simple 1 64 64 0 16 0 0 1024 9" > "$T/l/card.z"
if cardchk; then die "--card: a second record's 9 blocks against the calculator's 32 passed"; fi
grep -q 'k_simple: 9 block(s) an SM on the card, 32 by the calculator (64 threads' "$T/cerr" || die "--card second record: $(cat "$T/cerr")"
grep -q '^| ops | `k_simple` | 256 | 0 | 16 / 16 | 0 | 8 | 8 | .* | differs |' "$T/ct.md" || die "--card worst row: $(cat "$T/ct.md")"
# the card runs other registers than ptxas's report (another binary)
setup; card 6 32
if cardchk; then die "--card: 32 registers against ptxas's 16 passed"; fi
grep -q 'k_simple: the card runs 32 registers and 0 bytes of static shared memory, ptxas reported 16 and 0' "$T/cerr" ||
    die "--card registers: $(cat "$T/cerr")"
# the line becomes run.sh's table row (tests/gpu/table.py)
printf '# empty\n\n## GPU runs\n' > "$T/perf.md"
python3 "$LR_ROOT/tests/gpu/table.py" "$T/cout" "$T/perf.md" "$T/perf2.md" --card X --date 2026-01-01 > "$T/row.md" ||
    die "table.py on the --card line failed"
grep -q '^| blocks / SM on the card .* | 3 of 3 kernels agree; differ (calculator/card): none; .*; registers or static shared memory not ptxas.s: k_simple .* | FAIL |$' \
    "$T/row.md" || die "--card table row: $(cat "$T/row.md")"
# no card files (run.sh --dry, the emulated device): said, exit 0
setup
cardchk || die "--card without card files failed"
grep -q '^occupancy result=DRY kernels=3 ' "$T/cout" || die "--card dry line: $(cat "$T/cout")"
setup; echo "cuda/ops.cu k_simple 1 32" > "$T/l/card.y"
expect_fail 2 python3 "$LR_ROOT/tests/cuda_resources.py" --card "$occ" "$T/p" "$T/l" "$T/ct.md"
[[ $LAST_ERR == *"card.y:1: want 11 fields, got 4" ]] || die "bad card record: $LAST_ERR"

# cuda/launchlog.cu itself (tests/launchlog_check.cc, no card here): nothing
# without LR_GPU_LAUNCH_DIR; with it, one card.* file at exit, the launches
# joined by kernel (counts, least and most threads, most dynamic shared
# memory), -1 for what the runtime did not answer, a "#device" line; and
# --card reads it and fails on those -1 (registers not ptxas's, no blocks)
lc=$LR_ROOT/build/cuda/launchlog_check
if [ -x "$lc" ]; then
    rm -rf "$T/ll" && mkdir -p "$T/ll"
    (cd "$T/ll" && "$lc") || die "launchlog_check without LR_GPU_LAUNCH_DIR failed"
    [ -z "$(ls -A "$T/ll")" ] || die "launchlog wrote without LR_GPU_LAUNCH_DIR: $(ls "$T/ll")"
    LR_GPU_LAUNCH_DIR=$T/ll "$lc" || die "launchlog_check failed"
    [ "$(ls "$T/ll" | grep -c '^card\.')" = 1 ] || die "launchlog: want one card.* file: $(ls "$T/ll")"
    f=$(ls "$T"/ll/card.*)
    [ "$(head -n 1 "$f" | cut -c 1-8)" = "#device " ] || die "launchlog: no #device line: $(cat "$f")"
    grep -qx 'cuda/ops.cu k_one 2 128 256 1024 -1 -1 -1 -1 -1' "$f" || die "launchlog k_one: $(cat "$f")"
    grep -qx 'cuda/attention.cu k_two<true> 1 32 32 0 -1 -1 -1 -1 -1' "$f" || die "launchlog k_two: $(cat "$f")"
    [ "$(wc -l < "$f")" = 3 ] || die "launchlog: want 3 lines: $(cat "$f")"
    setup; rm -f "$T"/l/*; cp "$f" "$T/l/"
    { entry _Z5k_onev 16 0 0 0; } > "$T/p/ops.ptxas"
    if cardchk; then die "--card passed the runtime's -1 answers"; fi
    grep -q 'k_one: the card runs -1 registers' "$T/cerr" || die "--card on launchlog's file: $(cat "$T/cerr")"
    grep -q 'k_two<true>: launched on the card but not in ptxas' "$T/cerr" || die "--card k_two: $(cat "$T/cerr")"
fi

# the real build's reports parse: every kernel ptxas compiled has a name and registers
if ls "$LR_ROOT"/build/cuda/cuda/*.ptxas > /dev/null 2>&1; then
    n=$(cat "$LR_ROOT"/build/cuda/cuda/*.ptxas | grep -c "Compiling entry function")
    mkdir -p "$T/l2" && echo "cuda/ops.cu embedding_kernel 1 256 256 0" > "$T/l2/launches.a"
    python3 "$LR_ROOT/tests/cuda_resources.py" "$occ" "$LR_ROOT/build/cuda/cuda" "$T/l2" --table > "$T/out" 2> "$T/err" || true
    rows=$(grep -c '^| [a-z_]* | `' "$T/out")
    [ "$rows" -ge "$n" ] || die "$n kernels in the real reports, $rows rows"
fi
echo "ok"
