# The paper's baseline: rejection-sampling SFT. The expert samples
# SFT_SAMPLES solutions per training problem at temperature SFT_TEMP (one
# lr-infer run per sample seed; each problem's draw depends only on the seed
# and its index), lr-eval scores every sample against the gold answer, the
# samples whose final answer is right are kept, and the expert is tuned on
# those whole trajectories (lr-tune's SFT objective on `dist` records: the
# response tokens after the sampling prompt) with the same LoRA and flags as
# the method, once per seed of SEEDS; the same evaluation as every variant.
#
#   make -f pipelines/sft.mk EXPERT=... [SFT_N=...] [SFT_SAMPLES=4] [SEEDS="1 2 3"]
#
# Variables of this file (pipelines/common.mk lists the shared ones):
#   SFT_N          training problems sampled (default N, the method's)
#   SFT_SAMPLES    samples per problem (4); SFT_TEMP (0.8), SFT_TOP_P (0.95)
#   SFT_MAX_NEW    tokens per sample (EVAL_MAX_NEW: whole solutions)
#   SFT_TUNE_FLAGS lr-tune flags for SFT (TUNE_FLAGS)
.DEFAULT_GOAL := sft
ifndef LR_PIPELINE_COMMON
LR_PIPELINE_COMMON := 1
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk
endif

SFT_N       ?= $(N)
SFT_SAMPLES ?= 4
SFT_TEMP    ?= 0.8
SFT_TOP_P   ?= 0.95
SFT_MAX_NEW ?= $(EVAL_MAX_NEW)
SFT_TUNE_FLAGS ?= $(TUNE_FLAGS)
SFT_SEEDS    = $(shell seq 1 $(SFT_SAMPLES))
SD = $(OUT)/sft/samples
LABEL_sft = SFT (rejection sampling)

sft: $(foreach s,$(SEEDS),$(OUT)/sft/s$(s)/eval/summary.json)

# One sample per problem per seed; only the chosen token is listed (SFT
# needs no distributions). Scored against DATA's gold answers, then the
# right ones kept (lr-dump's JSON filtered by the verdicts, back to a stream).
define sample_rule
$(SD)/k$(1).lrs:
	$$(call stage_begin,sft sample $(1))
	mkdir -p $(SD)
	$(SHARDED) $$@ $(BIN)/lr-infer --model $(EXPERT) --data $(DATA) --limit $(SFT_N) --max-new-tokens $(SFT_MAX_NEW) \
	    --temperature $(SFT_TEMP) --top-p $(SFT_TOP_P) --seed $(1) --top-k-max 1 --eos '<|im_end|>' --eos '<|endoftext|>' \
	    $(INFER_RUN) $(INFER_FLAGS)
	$$(call stage_end,sft sample $(1),$(SD)/times/k$(1))
$(SD)/k$(1).kept.lrs: $(SD)/k$(1).lrs
	$$(call stage_begin,sft filter $(1))
	rm -rf $(SD)/k$(1).score
	$(BIN)/lr-dump $$< | $(BIN)/lr-eval score --pred - --data $(DATA) --label 'sample $(1)' --out-dir $(SD)/k$(1).score \
	    2> $(SD)/k$(1).score.log || { cat $(SD)/k$(1).score.log >&2; false; }
	jq -c 'select(.correct) | .id' $(SD)/k$(1).score/results.jsonl > $(SD)/k$(1).right
	$(BIN)/lr-dump $$< | jq -c --slurpfile ok $(SD)/k$(1).right \
	    'if .lrs_end then empty elif .lrs then . elif (.id | IN($$$$ok[])) then . else empty end' \
	  | awk '{ print } NR > 1 { n++ } END { printf "{\"lrs_end\": %d}\n", n }' \
	  | $(BIN)/lr-dump --from-json -o $$@.part
	mv $$@.part $$@
	$$(call stage_end,sft filter $(1),$(SD)/times/filter$(1))
endef
$(foreach k,$(SFT_SEEDS),$(eval $(call sample_rule,$(k))))

SFT_KEPT = $(foreach k,$(SFT_SEEDS),$(SD)/k$(k).kept.lrs)
$(foreach s,$(SEEDS),$(eval $(call tune_rule,$(OUT)/sft/s$(s),$(LABEL_sft) seed $(s),$(SFT_KEPT),$(SFT_TUNE_FLAGS) --objective sft --seed $(s))))

.PHONY: sft
