# The libFuzzer targets (tests/fuzz: stream reader, safetensors header,
# tokenizer.json loading + encoding, answer extraction), each for
# LR_FUZZ_SECONDS (default 10; CI sets 60) from the committed seeds; any
# crash, leak or undefined behaviour fails. They carry their own ASan and
# UBSan, so the sanitizer pass of the suite does not run them again.
source "$LR_ROOT/tests/lib.sh"
if [ "${LR_SAN:-}" = 1 ]; then echo "fuzz targets ran in the plain pass"; exit 0; fi
command -v clang > /dev/null || command -v clang-14 > /dev/null || die "no clang: make deps installs it"
cd "$LR_ROOT"
bash tests/fuzz/run.sh "${LR_FUZZ_SECONDS:-10}" || die "a fuzz target failed (build/fuzz/artifacts)"
echo ok
