# The paper's ablations and the controls that would falsify the method, on
# one shared stage 1 (the expert's greedy traces and the amateur's reading
# of them are made once; every variant reselects and retrains from them):
#
#   lightreasoner        KL >= beta, contrastive soft labels (the method)
#   no-select            w/o Select: every step (beta 0)
#   no-contrast          w/o Contrast: the expert's own distribution on the mask
#   no-contrast-onehot   w/o Contrast, one-hot: the expert's argmax
#   no-both              w/o both: every step, the expert's distribution
#   random               control: as many steps as KL keeps, drawn at random
#                        (lr-kl --select random --seed SEED, one draw per seed)
#   lowest               control: as many steps, those of lowest KL
#   lightreasoner-r2     two rounds: each seed's tuned expert (merged, f32)
#                        becomes the expert of a second round (its own stage 1,
#                        selection and LoRA); only when listed in VARIANTS
#
#   make -f pipelines/ablations.mk EXPERT=... AMATEUR=... [VARIANTS="..."] [SEEDS="1 2 3"]
#
# Every variant is tuned once per seed of SEEDS and evaluated like the base
# (pipelines/common.mk lists the shared variables); OUT/ablations.md is the
# lr-eval compare table. Variables of this file:
#   BETA, ALPHA   KL threshold (0.4) and plausibility mask (0.2)
#   VARIANTS      which of the above (all)
#   SAMPLE_FLAGS  extra lr-infer flags of stage 1
.DEFAULT_GOAL := ablations
ifndef LR_PIPELINE_COMMON
LR_PIPELINE_COMMON := 1
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk
endif

BETA     ?= 0.4
ALPHA    ?= 0.2
VARIANTS ?= lightreasoner no-select no-contrast no-contrast-onehot no-both random lowest
SAMPLE_FLAGS ?=

#                          beta    select  target
SPEC_lightreasoner       = $(BETA) kl      contrast
SPEC_no-select           = 0       kl      contrast
SPEC_no-contrast         = $(BETA) kl      expert
SPEC_no-contrast-onehot  = $(BETA) kl      onehot
SPEC_no-both             = 0       kl      expert
SPEC_random              = $(BETA) random  contrast
SPEC_lowest              = $(BETA) lowest  contrast
SPEC_lightreasoner-r2    = $(BETA) kl      contrast
LABEL_lightreasoner      = LightReasoner
LABEL_no-select          = w/o Select (beta 0)
LABEL_no-contrast        = w/o Contrast (expert dist.)
LABEL_no-contrast-onehot = w/o Contrast (one-hot)
LABEL_no-both            = w/o Select and Contrast
LABEL_random             = control: random steps
LABEL_lowest             = control: lowest-KL steps
LABEL_lightreasoner-r2   = LightReasoner (2 rounds)

S1 = $(OUT)/stage1
ablations: $(OUT)/ablations.md

# Stage 1: the expert generates greedily and records its distributions; the
# amateur reads the same tokens (teacher-forced). lr-infer -o F writes F.part,
# resumes it when rerun, and renames it onto F only when complete.
$(S1)/expert.lrs:
	$(call stage_begin,sample expert)
	mkdir -p $(S1)
	$(SHARDED) $@ $(BIN)/lr-infer --model $(EXPERT) --data $(DATA) --limit $(N) --max-new-tokens $(MAX_NEW) \
	    $(INFER_RUN) $(INFER_FLAGS) $(SAMPLE_FLAGS)
	$(call stage_end,sample expert,$(S1)/times/expert)
$(S1)/amateur.lrs: $(S1)/expert.lrs
	$(call stage_begin,sample amateur)
	$(SHARDED) $@ $(BIN)/lr-infer --model $(AMATEUR) --follow $< $(INFER_RUN) $(INFER_FLAGS)
	$(call stage_end,sample amateur,$(S1)/times/amateur)

# $(call examples_rule,DIR,VARIANT,SEED[,STAGE1]): DIR/examples.lrs from the
# stage-1 pair in STAGE1 (S1), lr-kl's summary in DIR/kl.log (steps seen and
# kept) and its histogram in DIR/kl-stats.tsv.
define examples_rule
$(1)/examples.lrs: $(or $(4),$(S1))/expert.lrs $(or $(4),$(S1))/amateur.lrs
	$$(call stage_begin,select $(2))
	mkdir -p $(1)
	$(BIN)/lr-kl --beta $(word 1,$(SPEC_$(2))) --select $(word 2,$(SPEC_$(2))) $(if $(3),--seed $(3)) \
	    --stats $(1)/kl-stats.tsv $(or $(4),$(S1))/expert.lrs $(or $(4),$(S1))/amateur.lrs 2> $(1)/kl.log \
	  | $(BIN)/lr-contrast --alpha $(ALPHA) --target $(word 3,$(SPEC_$(2))) 2> $(1)/contrast.log > $$@.part \
	  || { cat $(1)/kl.log $(1)/contrast.log >&2; false; }
	mv $$@.part $$@
	$$(call stage_end,select $(2),$(1)/times/select)
endef

# $(call round2_rules,SEED): round 2 of seed SEED: the round-1 expert with
# its adapter merged (f32) samples again; select, tune and evaluate on it.
define round2_rules
$(OUT)/lightreasoner-r2/s$(1)/expert/config.json: $(OUT)/lightreasoner/s$(1)/adapter/adapter_config.json
	$$(call stage_begin,merge round 1 seed $(1))
	rm -rf $$(@D) $$(@D).part
	mkdir -p $(OUT)/lightreasoner-r2/s$(1)/stage1
	$(BIN)/lr-merge --dtype f32 $(EXPERT) $(OUT)/lightreasoner/s$(1)/adapter $$(@D).part
	mv $$(@D).part $$(@D)
	$$(call stage_end,merge round 1 seed $(1),$(OUT)/lightreasoner-r2/s$(1)/times/merge)
$(OUT)/lightreasoner-r2/s$(1)/stage1/expert.lrs: $(OUT)/lightreasoner-r2/s$(1)/expert/config.json
	$$(call stage_begin,sample expert round 2 seed $(1))
	$(SHARDED) $$@ $(BIN)/lr-infer --model $(OUT)/lightreasoner-r2/s$(1)/expert --data $(DATA) --limit $(N) \
	    --max-new-tokens $(MAX_NEW) $(INFER_RUN) $(INFER_FLAGS) $(SAMPLE_FLAGS)
	$$(call stage_end,sample expert round 2 seed $(1),$(OUT)/lightreasoner-r2/s$(1)/stage1/times/expert)
$(OUT)/lightreasoner-r2/s$(1)/stage1/amateur.lrs: $(OUT)/lightreasoner-r2/s$(1)/stage1/expert.lrs
	$$(call stage_begin,sample amateur round 2 seed $(1))
	$(SHARDED) $$@ $(BIN)/lr-infer --model $(AMATEUR) --follow $$< $(INFER_RUN) $(INFER_FLAGS)
	$$(call stage_end,sample amateur round 2 seed $(1),$(OUT)/lightreasoner-r2/s$(1)/stage1/times/amateur)
$(call examples_rule,$(OUT)/lightreasoner-r2/s$(1),lightreasoner-r2,,$(OUT)/lightreasoner-r2/s$(1)/stage1)
$(call tune_rule,$(OUT)/lightreasoner-r2/s$(1),$(LABEL_lightreasoner-r2) seed $(1),$(OUT)/lightreasoner-r2/s$(1)/examples.lrs,$(TUNE_FLAGS) --seed $(1),$(OUT)/lightreasoner-r2/s$(1)/expert)
endef

# $(call variant_rules,VARIANT): examples (one set, or one per seed for
# random), then per seed an adapter and its evaluation.
define variant_rules
ifeq ($(1),lightreasoner-r2)
$(foreach s,$(SEEDS),$(call round2_rules,$(s))
)
else ifeq ($(word 2,$(SPEC_$(1))),random)
$(foreach s,$(SEEDS),$(call examples_rule,$(OUT)/$(1)/s$(s),$(1),$(s))
$(call tune_rule,$(OUT)/$(1)/s$(s),$(LABEL_$(1)) seed $(s),$(OUT)/$(1)/s$(s)/examples.lrs,$(TUNE_FLAGS) --seed $(s))
)
else
$(call examples_rule,$(OUT)/$(1),$(1),)
$(foreach s,$(SEEDS),$(call tune_rule,$(OUT)/$(1)/s$(s),$(LABEL_$(1)) seed $(s),$(OUT)/$(1)/examples.lrs,$(TUNE_FLAGS) --seed $(s))
)
endif
endef
$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))

# `LABEL=run,run,run` per variant: lr-eval compare's groups of seeds
variant_evals = $(foreach s,$(SEEDS),$(OUT)/$(1)/s$(s)/eval/summary.json)
variant_group = '$(LABEL_$(1))=$(subst $(space),$(comma),$(strip $(call variant_evals,$(1))))'
comma := ,
empty :=
space := $(empty) $(empty)
$(OUT)/ablations.md: $(OUT)/base/eval/summary.json $(foreach v,$(VARIANTS),$(call variant_evals,$(v)))
	$(BIN)/lr-eval compare $(OUT)/base/eval $(foreach v,$(VARIANTS),$(call variant_group,$(v))) > $@.part
	mv $@.part $@
	cat $@

.PHONY: ablations
