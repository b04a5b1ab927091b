/* lr-tune: LoRA fine-tuning on the CPU or the CUDA device (METHOD.md stage
 * 2, and the SFT baseline): options, wiring and exit codes over lib/method
 * (tuneplan.h: the run's setup, from the inputs to a ready tuner;
 * examples.h: the inputs and their order; tune.h: one optimizer step, on
 * either backend; checkpoint.h: resumable state, the same files from both).
 *
 *   lr-tune --model DIR --out ADAPTER_DIR [options] INPUT.lrs...
 *
 * --out is written as OUT.part and renamed onto OUT when training ends, so
 * OUT is always a complete adapter (or, with --full, model folder).
 * Checkpoints live in OUT.part/checkpoint-<step>; --resume continues from
 * the newest good one, only for the same settings, and ends with the same
 * weights as an uninterrupted run.
 *
 * Data parallel (docs/TUNE.md): W processes, one per GPU or CPU socket,
 * each rank r taking examples [r B/W, (r+1) B/W) of every micro-batch of B,
 * gradients summed over the ranks before clipping (nn/allreduce.h); rank 0
 * alone writes OUT, the checkpoints and the log. */
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"
#include "infer/gpu.h"
#include "method/checkpoint.h"
#include "method/examples.h"
#include "method/tune.h"
#include "method/tuneplan.h"
#include "model/lora.h"
#include "nn/allreduce.h"
#include "nn/ranks.h"
#include "model/merge.h"
#include "model/model.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* rmdir */

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-tune --model DIR --out DIR [options] INPUT.lrs...\n"
            "LoRA training of the model on `example` records (lr-contrast: soft-KL\n"
            "objective) or `dist` records (lr-infer: SFT on the response tokens).\n"
            "Writes a PEFT adapter (adapter_config.json, adapter_model.safetensors) to --out,\n"
            "under the name OUT.part until training ends (checkpoints live there).\n"
            "\n"
            "  --objective soft-kl|sft|lm  default: from the input kind; lm: the inputs are\n"
            "                           JSON lines {\"text\": ...}, tokenized with the model's\n"
            "                           tokenizer, every token after the first predicted\n"
            "                           (language-model pretraining, e.g. with --full)\n"
            "  --targets LIST           LoRA modules: q,k,v,o,gate,up,down or all [q,v]\n"
            "  --r N [8]  --alpha X [16]  --dropout P [0.05]\n"
            "  --init-adapter DIR       start from this PEFT adapter instead of a fresh one\n"
            "  --full                   train every base weight instead (small models, or\n"
            "                           from scratch); --out gets a HF model folder (f32)\n"
            "  --lr X [5e-5]  --warmup N [0]  --weight-decay X [0]  --clip X [1.0, 0: none]\n"
            "  --beta1 X [0.9]  --beta2 X [0.999]  --eps X [1e-8]\n"
            "  --batch N [8]  --accum N [2]  --epochs N [1]\n"
            "  --max-steps N            optimizer steps [from --epochs]; the linear schedule\n"
            "                           reaches 0 at step N, and the examples are cycled\n"
            "                           (reshuffled each pass) when N steps need more\n"
            "  --seed N [42]            data order and LoRA init/dropout\n"
            "  --no-shuffle             keep the input order\n"
            "  --group-by-length        batches of similar lengths (HF group_by_length:\n"
            "                           shuffled mega-batches of 50 batches, sorted by length)\n"
            "  --group-by-problem       shuffle problems, keep each problem's examples\n"
            "                           together (so packing finds shared prefixes)\n"
            "  --pack | --no-pack       one forward per shared prefix [pack]\n"
            "  --vocab-limit N          softmax over the first N logits only (reference\n"
            "                           quirk: 151643 for Qwen) [whole vocabulary]\n"
            "  --reference-quirks       train exactly as the authors' LightR_finetuning.py,\n"
            "                           beyond the paper: right-pad each micro-batch with\n"
            "                           pad_token_id and take the loss at its last position\n"
            "                           (a pad for every shorter example), softmax over\n"
            "                           tokenizer.vocab_size logits, inputs cut to 512 tokens;\n"
            "                           no packing; soft-KL only (docs/TUNE.md)\n"
            "  --max-len N [4096]       longer sequences are cut to their first N tokens\n"
            "  --max-rows N [2048]      token rows per forward call (memory)\n"
            "  --save-every N [0]       checkpoint every N steps (0: never); the newest 2 kept\n"
            "  --resume                 continue from the newest good OUT.part/checkpoint-N;\n"
            "                           refused when a setting that changes the result differs\n"
            "  --reschedule             with --resume: accept a new --max-steps (the linear\n"
            "                           schedule is recomputed for the new total from the\n"
            "                           resumed step on: stretch or shorten a running plan)\n"
            "  --stop-after N           exit (code 0, no final adapter) after step N, as a\n"
            "                           killed run would; for resume tests\n"
            "  --force                  replace an existing --out when done\n"
            "  --log FILE               JSON lines, one per step (a resume drops the lines\n"
            "                           after its checkpoint)\n"
            "  --device cpu|cuda|auto   where to train [cpu]; auto: cuda when a GPU is present\n"
            "                           (and --full is not set).\n"
            "                           cuda: LoRA, or --full in float32 (small models: 16\n"
            "                           bytes a parameter on the device), the same outputs\n"
            "                           and checkpoints as the cpu (docs/TUNE.md)\n"
            "  --precision bf16|f32     the device trainer's base weights and their products\n"
            "                           [cuda: bf16; --full and the cpu: f32, their only one];\n"
            "                           bf16: bf16 base weights and GEMM operands, float32\n"
            "                           accumulation, LoRA weights, gradients and optimizer;\n"
            "                           f32: float32 throughout, the cpu's numbers. A\n"
            "                           --resume may change it, as it may change --device\n"
            "  --recompute auto|always|never  the device trainer's activations [auto]:\n"
            "                           always keeps only each layer's input and reruns\n"
            "                           the layer's forward before its backward (less\n"
            "                           memory, one more forward, the same numbers); auto\n"
            "                           does so when keeping them all would not fit the\n"
            "                           free device memory (docs/CUDA.md); the cpu keeps\n"
            "                           them all (always refused there)\n"
            "  --device-memory MiB      the device memory auto lets the activations, the\n"
            "                           KV cache and the trainer's buffers take besides\n"
            "                           the weights and the LoRA state [the free memory\n"
            "                           once those are uploaded]: for a shared card, or\n"
            "                           to keep headroom (cuda only)\n"
            "Data parallel: one lr-tune per rank, the same command and inputs on each;\n"
            "--batch is the global micro-batch, rank r of W takes its examples\n"
            "[r*B/W, (r+1)*B/W); rank 0 alone writes --out, checkpoints and --log.\n"
            "  --rank R  --world W      this process's rank and the number of ranks\n"
            "                           [else RANK/WORLD_SIZE (torchrun), else\n"
            "                           SLURM_PROCID/SLURM_NTASKS (srun), else 0 of 1]\n"
            "  --master HOST:PORT       rank 0's address [else MASTER_ADDR/MASTER_PORT,\n"
            "                           else 127.0.0.1:29500]; LOCAL_RANK (else\n"
            "                           SLURM_LOCALID, else the rank) picks the CUDA device\n"
            "  --dp-timeout S [600]     how long ranks wait for each other at the start\n"
            "  --dp-backend auto|nccl|host  how the ranks sum gradients [auto]: nccl on\n"
            "                           the device (every rank on cuda with a card of its\n"
            "                           own and libnccl.so.2; refused otherwise), host\n"
            "                           through rank 0 over TCP, auto nccl when it can,\n"
            "                           else host (rank 0's start line says why)\n"
            "  -h, --help\n"
            "A NaN or infinite loss, gradient or weight stops training (exit 2); the\n"
            "checkpoints written so far stay in OUT.part.\n"
            "Exit codes: 0 ok, 1 usage (also: --resume with other settings; a world size\n"
            "that does not divide --batch, a rank out of range), 2 bad input (also: ranks\n"
            "with different models, data or settings), 3 I/O error (also: a rank that is\n"
            "gone or cannot be reached), 4 GPU error, 130 interrupted.\n");
}

enum { O_OBJ = 256, O_TGT, O_R, O_ALPHA, O_DROP, O_INIT, O_LR, O_WARM, O_WD, O_CLIP, O_B1, O_B2, O_EPS, O_BATCH, O_ACCUM,
       O_EPOCHS, O_MAXSTEPS, O_SEED, O_NOSHUF, O_BYPROB, O_PACK, O_NOPACK, O_VLIM, O_MAXLEN, O_MAXROWS, O_SAVE, O_RESUME,
       O_STOP, O_LOG, O_FULL, O_BYLEN, O_MODEL, O_OUT, O_DEVICE, O_FORCE, O_QUIRKS, O_RESCHED, O_RANK, O_WORLD, O_MASTER,
       O_DPTIME, O_PREC, O_RECOMP, O_DEVMEM, O_DPBACK };

/* the data-parallel flags, resolved with the environment by ranks.h */
typedef struct {
    const char *rank, *world, *master;
    double timeout;
} dp_flags;

/* Parses argv into o; 0, or LR_EUSAGE with the message set. *help = 1 for --help. */
static int parse(tune_cfg *o, dp_flags *dp, int argc, char **argv, int *help) {
    static const struct option lo[] = {
        {"model", 1, 0, O_MODEL},       {"out", 1, 0, O_OUT},           {"objective", 1, 0, O_OBJ},
        {"targets", 1, 0, O_TGT},       {"r", 1, 0, O_R},               {"alpha", 1, 0, O_ALPHA},
        {"dropout", 1, 0, O_DROP},      {"init-adapter", 1, 0, O_INIT}, {"lr", 1, 0, O_LR},
        {"warmup", 1, 0, O_WARM},       {"weight-decay", 1, 0, O_WD},   {"clip", 1, 0, O_CLIP},
        {"beta1", 1, 0, O_B1},          {"beta2", 1, 0, O_B2},          {"eps", 1, 0, O_EPS},
        {"batch", 1, 0, O_BATCH},       {"accum", 1, 0, O_ACCUM},       {"epochs", 1, 0, O_EPOCHS},
        {"max-steps", 1, 0, O_MAXSTEPS}, {"seed", 1, 0, O_SEED},        {"no-shuffle", 0, 0, O_NOSHUF},
        {"group-by-problem", 0, 0, O_BYPROB}, {"pack", 0, 0, O_PACK},   {"no-pack", 0, 0, O_NOPACK},
        {"vocab-limit", 1, 0, O_VLIM},  {"max-len", 1, 0, O_MAXLEN},    {"max-rows", 1, 0, O_MAXROWS},
        {"save-every", 1, 0, O_SAVE},   {"resume", 0, 0, O_RESUME},     {"reschedule", 0, 0, O_RESCHED},     {"log", 1, 0, O_LOG},
        {"stop-after", 1, 0, O_STOP},   {"full", 0, 0, O_FULL},         {"group-by-length", 0, 0, O_BYLEN},
        {"device", 1, 0, O_DEVICE},     {"force", 0, 0, O_FORCE},       {"reference-quirks", 0, 0, O_QUIRKS},
        {"rank", 1, 0, O_RANK},         {"world", 1, 0, O_WORLD},       {"master", 1, 0, O_MASTER},
        {"dp-timeout", 1, 0, O_DPTIME}, {"precision", 1, 0, O_PREC},   {"recompute", 1, 0, O_RECOMP},
        {"device-memory", 1, 0, O_DEVMEM}, {"dp-backend", 1, 0, O_DPBACK}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c, idx = 0, rc = LR_OK;
    char flag[64];
    const int IMAX = 1 << 30;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "h", lo, &idx)) != -1) {
        if (c != '?' && c != 'h') snprintf(flag, sizeof flag, "--%s", lo[idx].name);
        switch (c) {
        case 'h': *help = 1; return LR_OK;
        case O_MODEL: o->model_dir = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_OBJ: o->objective_s = optarg; break;
        case O_TGT: o->targets_s = optarg; break;
        case O_R: rc = opt_int(flag, optarg, 1, 65536, &o->r); break;
        case O_ALPHA: rc = opt_double(flag, optarg, 1e-6, 1e6, &o->alpha); break;
        case O_DROP: rc = opt_double(flag, optarg, 0, 0.99, &o->dropout); break;
        case O_INIT: o->init_adapter = optarg; break;
        case O_LR: rc = opt_double(flag, optarg, 0, 10, &o->lr); break;
        case O_WARM: rc = opt_int(flag, optarg, 0, IMAX, &o->warmup); break;
        case O_WD: rc = opt_double(flag, optarg, 0, 10, &o->wd); break;
        case O_CLIP: rc = opt_double(flag, optarg, 0, 1e6, &o->clip); break;
        case O_B1: rc = opt_double(flag, optarg, 0, 0.999999, &o->beta1); break;
        case O_B2: rc = opt_double(flag, optarg, 0, 0.999999, &o->beta2); break;
        case O_EPS: rc = opt_double(flag, optarg, 0, 1, &o->eps); break;
        case O_BATCH: rc = opt_int(flag, optarg, 1, 65536, &o->batch); break;
        case O_ACCUM: rc = opt_int(flag, optarg, 1, 65536, &o->accum); break;
        case O_EPOCHS: rc = opt_int(flag, optarg, 1, 1000000, &o->epochs); break;
        case O_MAXSTEPS: rc = opt_long(flag, optarg, 1, IMAX, &o->max_steps); break;
        case O_SEED: rc = opt_u64(flag, optarg, &o->seed); break;
        case O_NOSHUF: o->shuffle = 0; break;
        case O_BYPROB: o->by_problem = 1; break;
        case O_BYLEN: o->group_len = 1; break;
        case O_FULL: o->full = 1; break;
        case O_PACK: o->pack = 1; break;
        case O_NOPACK: o->pack = 0; break;
        case O_VLIM: rc = opt_int(flag, optarg, 1, IMAX, &o->vlim); break;
        case O_MAXLEN: rc = opt_int(flag, optarg, 2, IMAX, &o->max_len), o->max_len_set = 1; break;
        case O_MAXROWS: rc = opt_int(flag, optarg, 1, IMAX, &o->max_rows); break;
        case O_SAVE: rc = opt_int(flag, optarg, 0, IMAX, &o->save_every); break;
        case O_RESUME: o->resume = 1; break;
        case O_RESCHED: o->reschedule = 1; break;
        case O_STOP: rc = opt_int(flag, optarg, 1, IMAX, &o->stop_after); break;
        case O_LOG: o->log_path = optarg; break;
        case O_FORCE: o->force = 1; break;
        case O_QUIRKS: o->quirks = 1; break;
        case O_RANK: dp->rank = optarg; break;
        case O_WORLD: dp->world = optarg; break;
        case O_MASTER: dp->master = optarg; break;
        case O_DPTIME: rc = opt_double(flag, optarg, 0.1, 1e6, &dp->timeout); break;
        case O_DEVMEM: rc = opt_long(flag, optarg, 1, 1L << 30, &o->device_mem); break;
        case O_DEVICE:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                rc = lr_err(LR_EUSAGE, "--device %s: expected cpu, cuda or auto", optarg);
            o->device = optarg;
            break;
        case O_PREC:
            if (strcmp(optarg, "bf16") && strcmp(optarg, "f32"))
                rc = lr_err(LR_EUSAGE, "--precision %s: expected bf16 or f32", optarg);
            o->precision = optarg;
            break;
        case O_DPBACK:
            if (strcmp(optarg, "auto") && strcmp(optarg, "nccl") && strcmp(optarg, "host"))
                rc = lr_err(LR_EUSAGE, "--dp-backend %s: expected auto, nccl or host", optarg);
            o->dp_backend = optarg;
            break;
        case O_RECOMP:
            if (strcmp(optarg, "auto") && strcmp(optarg, "always") && strcmp(optarg, "never"))
                rc = lr_err(LR_EUSAGE, "--recompute %s: expected auto, always or never", optarg);
            o->recompute = optarg;
            break;
        default: rc = lr_err(LR_EUSAGE, "%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (!o->model_dir || !o->out) return lr_err(LR_EUSAGE, "--model and --out are required (see --help)");
    if (optind >= argc) return lr_err(LR_EUSAGE, "no input stream given (see --help)");
    if (o->reschedule && !o->resume) return lr_err(LR_EUSAGE, "--reschedule goes with --resume");
    o->lm = o->objective_s && !strcmp(o->objective_s, "lm");
    if (o->full && o->init_adapter) return lr_err(LR_EUSAGE, "--full trains the base weights: no --init-adapter");
    if (o->quirks && o->objective_s && strcmp(o->objective_s, "soft-kl"))
        return lr_err(LR_EUSAGE, "--reference-quirks: the reference's collate is the soft-KL objective's");
    if (!strcmp(o->device, "auto")) o->device = !o->full && gpu_device_count(NULL, 0) > 0 ? "cuda" : "cpu";
    /* bf16 is the device trainer's; the cpu trainer is float32 only */
    if (!o->precision) o->precision = !strcmp(o->device, "cuda") && !o->full ? "bf16" : "f32";
    /* full training updates the weights themselves: float32 masters, and
     * bf16 copies of them for the products would be a second model */
    if (o->full && !strcmp(o->precision, "bf16"))
        return lr_err(LR_EUSAGE, "--full --precision bf16: full-parameter training is float32 only (use --precision f32)");
    if (!strcmp(o->device, "cpu") && !strcmp(o->precision, "bf16"))
        return lr_err(LR_EUSAGE, "--precision bf16: the cpu trains in float32 only (use --device cuda, or --precision f32)");
    if (!o->recompute) o->recompute = "auto";
    if (!strcmp(o->device, "cpu") && !strcmp(o->recompute, "always"))
        return lr_err(LR_EUSAGE, "--recompute always: the cpu keeps every activation (use --device cuda)");
    if (!strcmp(o->device, "cpu") && o->dp_backend && !strcmp(o->dp_backend, "nccl"))
        return lr_err(LR_EUSAGE, "--dp-backend nccl: NCCL sums device gradients (use --device cuda, or host)");
    if (!strcmp(o->device, "cpu") && o->device_mem)
        return lr_err(LR_EUSAGE, "--device-memory %ld: the cpu trainer has no device memory to budget (use --device cuda)",
                      o->device_mem);
    return LR_OK;
}

int main(int argc, char **argv) {
    lr_progname = "lr-tune";
    tune_cfg o;
    tplan_defaults(&o);
    dp_flags dpf = {NULL, NULL, NULL, 600};
    ranks rk;
    int help = 0, rc = parse(&o, &dpf, argc, argv, &help);
    if (help) {
        usage(stdout);
        return 0;
    }
    if (!rc) rc = lora_parse_targets(o.targets_s, &o.targets);
    if (!rc) rc = ranks_resolve(&rk, dpf.rank, dpf.world, dpf.master);
    if (!rc && o.batch % rk.world)
        rc = lr_err(LR_EUSAGE, "rank %d of %d: --batch %d is not a multiple of the world size %d (%s)", rk.rank, rk.world,
                    o.batch, rk.world, rk.src);
    if (rc) return lr_fail(rc);
    o.world = rk.world;
    /* rank 0 alone writes outputs and the log; the others train silently */
    int lead = rk.rank == 0, share = o.batch / rk.world;
    char **inputs = argv + optind;
    int nin = argc - optind;

    /* everything main owns, released at `done` */
    model m = {0};
    lora lo = {0};
    comm *dp = NULL;
    tuner tu = {0};
    tune_data ds = {0};
    tune_schedule sc;
    json_t *set = NULL;
    lr_out *out = NULL;
    FILE *logf = NULL;
    int *ord = NULL, *padbuf = NULL, tu_live = 0, keep = 0;
    tune_example *mb = NULL, *mbp = NULL;
    char *tmp = NULL;
    long start = 0, s = 0;

    const char **ins = xcalloc((size_t)nin + 2, sizeof *ins);
    ins[0] = o.model_dir, ins[1] = o.init_adapter;
    for (int i = 0; i < nin; i++) ins[i + 2] = inputs[i];
    rc = out_check_inputs(o.out, ins, nin + 2);
    free(ins);
    if (rc) goto done;
    /* bf16 LoRA on the device: the trainer uploads the tensors from the
     * mmap'd checkpoint, so the host never widens the model to float32
     * (twice a bf16 checkpoint's size); --full and float32 need the copy */
    int opened = !strcmp(o.device, "cuda") && !o.full && !strcmp(o.precision, "bf16");
    if ((rc = opened ? model_open(&m, o.model_dir) : model_load(&m, o.model_dir))) goto done;
    if ((rc = tplan_data(&o, &m, inputs, nin, &ds))) goto done;
    tplan_schedule(&o, &ds, &sc);
    if ((rc = tplan_tuner(&o, &m, &lo, &ds, &sc, &tu))) goto done;
    tu_live = 1;
    if (!strcmp(o.device, "cuda")) {
        char name[256];
        if (gpu_device_count(name, sizeof name) < 1) {
            rc = lr_err(LR_EGPU, "--device cuda: no usable CUDA device (%s)", name);
            goto done;
        }
        int dev = 0;
        if (rk.world > 1 && (rc = gpu_select_device(rk.local, &dev))) goto done;
        if ((rc = tuner_use_gpu(&tu))) goto done;
        size_t need = 0, budget = 0, wbytes = 0, abytes = 0;
        int recomp = gpu_trn_recomputes(tu.gpu, &need, &budget);
        gpu_trn_mem(tu.gpu, &wbytes, &abytes);
        if (lead)
            fprintf(stderr, "lr-tune: device cuda (%s, %s backend), precision %s, recompute %s (%s: keeping every "
                    "activation takes %.1f MiB of %.1f MiB %s), weights %.1f MiB, activations %.1f MiB\n", name,
                    gpu_backend(), o.precision, recomp ? "on" : "off", o.recompute, (double)need / 1048576.0,
                    (double)budget / 1048576.0, o.device_mem ? "allowed (--device-memory)" : "free",
                    (double)wbytes / 1048576.0, (double)abytes / 1048576.0);
    }
    long total = sc.total, steps_per_epoch = sc.steps_per_epoch, mb_per_epoch = sc.mb_per_epoch;
    if (!(set = tplan_settings(&o, &m, total, inputs, nin, &rc))) goto done;
    /* the ranks meet before anything is written, so a failed start leaves
     * nothing behind */
    comm_cfg cc = {rk.rank, rk.world, rk.addr, rk.port, dpf.timeout};
    const char *how;
    comm_field fields[COMM_MAX_FIELDS];
    if ((rc = comm_open(&dp, &cc, fields, tplan_fields(set, &o, fields, COMM_MAX_FIELDS)))) goto done;
    if ((rc = tuner_use_comm(&tu, dp, tplan_dp_backend(&o), &how))) goto done;
    if (dp && lead)
        fprintf(stderr, "lr-tune: data parallel, %d ranks (%s) meeting at %s:%d; each takes %d of a micro-batch's %d; %s\n",
                rk.world, rk.src, rk.addr, rk.port, share, o.batch, how);

    /* OUT.part keeps its checkpoints across failures and signals when
     * there can be any */
    keep = o.save_every || o.resume;
    const char *td;
    if (lead && (rc = out_open_dir(&out, o.out, (keep ? OUT_KEEP : 0) | (o.force ? OUT_FORCE : 0), &td))) goto done;
    if (lead) tmp = xstrdup(td);
    if (!lead) {
        /* the state comes from rank 0 (tuner_bcast_state below) */
    } else if (o.resume) {
        json_t *cmp = o.reschedule ? json_deep_copy(set) : json_incref(set);
        if (o.reschedule) json_object_del(cmp, "--max-steps"); /* the one setting a rescheduled resume may change */
        rc = ckpt_resume(tmp, &tu, cmp, &start);
        json_decref(cmp);
        if (rc) goto done;
        if (start) fprintf(stderr, "lr-tune: resuming from %s/checkpoint-%ld\n", tmp, start);
        else fprintf(stderr, "lr-tune: no checkpoint in %s, starting afresh\n", tmp);
    } else ckpt_clear(tmp);
    if ((rc = tuner_bcast_state(&tu, &start))) goto done;
    if (lead && o.log_path && start && (rc = ckpt_trim_log(o.log_path, start))) goto done;
    if (lead && o.log_path && !(logf = fopen(o.log_path, start ? "a" : "w"))) {
        rc = lr_err(LR_EIO, "%s: %s", o.log_path, strerror(errno));
        goto done;
    }
    if (lead) fprintf(stderr, "lr-tune: %d examples (%s), %ld steps of %d x %d, %zu trainable parameters\n", ds.n,
            o.lm ? "lm" : ds.objective == TUNE_SFT ? "sft" : "soft-kl", total, o.batch, o.accum, tu.n);

    ord = xmalloc((size_t)ds.n * sizeof(int));
    mb = xmalloc((size_t)o.batch * sizeof *mb);
    mbp = xmalloc((size_t)o.batch * sizeof *mbp);
    if (o.quirks) padbuf = xmalloc((size_t)o.batch * sc.maxlen * sizeof(int));
    tune_order order = {o.seed, o.shuffle, o.by_problem, o.group_len, o.batch};
    int cur_epoch = -1, stopped = 0;
    double t_start = lr_now();
    for (s = start; s < total && !rc; s++) {
        int e = (int)(s / steps_per_epoch); /* past the last epoch: the examples again, reshuffled */
        if (e != cur_epoch) tdata_order(&ds, &order, cur_epoch = e, ord);
        long mb0 = (s % steps_per_epoch) * o.accum, mb1 = mb0 + o.accum;
        if (mb1 > mb_per_epoch) mb1 = mb_per_epoch;
        /* scale: soft-KL batchmean per micro-batch / accumulation steps; SFT
         * mean over the step's response tokens */
        long sft_tokens = 0;
        for (long k = mb0 * o.batch; k < mb1 * o.batch && k < ds.n; k++)
            sft_tokens += ds.ex[ord[k]].ntok - ds.ex[ord[k]].nprompt;
        double t0 = lr_now(), loss = 0.0, norm = 0.0;
        long rows0 = tu.rows_fwd, ex0 = tu.examples;
        tuner_begin_step(&tu, s);
        rc = tuner_zero_grad(&tu);
        for (long b = mb0; b < mb1 && !rc; b++) {
            int n = 0;
            for (long k = b * o.batch; k < (b + 1) * o.batch && k < ds.n; k++) mb[n++] = ds.ex[ord[k]];
            /* the scale and the quirks' padding are the whole micro-batch's;
             * this rank trains its share (one process: all of it) */
            if (o.quirks) tdata_pad_batch(mb, n, o.pad_id, mbp, padbuf);
            double scale = ds.objective == TUNE_SFT ? 1.0 / (double)sft_tokens : 1.0 / ((double)n * (double)(mb1 - mb0));
            int k0 = rk.rank * share, k1 = k0 + share < n ? k0 + share : n;
            if (k1 > k0) rc = tuner_accumulate(&tu, (o.quirks ? mbp : mb) + k0, k1 - k0, scale, &loss);
        }
        if (!rc && dp) { /* the step's gradient, loss and counts over all ranks */
            double st[3] = {loss, (double)(tu.rows_fwd - rows0), (double)(tu.examples - ex0)};
            rc = tuner_sum_grads(&tu);
            if (!rc) rc = comm_sum_f64(dp, st, 3);
            loss = st[0], tu.rows_fwd = rows0 + (long)st[1], tu.examples = ex0 + (long)st[2];
        }
        if (!rc && !isfinite(loss)) rc = lr_err(LR_EINPUT, "loss %g: not finite", loss);
        float lr = lr_linear((float)o.lr, s, total, o.warmup);
        if (!rc) rc = tuner_update(&tu, lr, &norm);
        if (rc) {
            lr_err_prefix(rc, "step %ld", s + 1);
            break;
        }
        double dt = lr_now() - t0, tps = (double)(tu.rows_fwd - rows0) / (dt > 0 ? dt : 1e-9);
        if (lead)
            fprintf(stderr, "step %ld/%ld epoch %d loss %.6f grad_norm %.4f lr %.3e tokens/s %.0f\n", s + 1, total, e, loss,
                    norm, lr, tps);
        if (logf) {
            fprintf(logf,
                    "{\"step\": %ld, \"epoch\": %d, \"loss\": %.9g, \"grad_norm\": %.9g, \"lr\": %.9g, \"tokens\": %ld, "
                    "\"tokens_per_s\": %.1f, \"step_s\": %.4f, \"examples\": %ld, \"precision\": \"%s\"}\n",
                    s + 1, e, loss, norm, lr, tu.rows_fwd - rows0, tps, dt, tu.examples, o.precision);
            fflush(logf);
        }
        if (lead && o.save_every && (s + 1) % o.save_every == 0 && s + 1 < total) rc = ckpt_save(tmp, s + 1, &tu, o.model_dir, set, 2);
        if (!rc && o.stop_after && s + 1 == o.stop_after) {
            if (lead) fprintf(stderr, "lr-tune: stopping after step %ld (--stop-after)\n", s + 1);
            stopped = 1;
            break;
        }
    }
    if (rc || stopped) goto done;
    if (lead) {
        if ((rc = tuner_download(&tu))) goto done; /* a device run's weights into lo */
        if ((rc = o.full ? model_save(&m, o.model_dir, tmp, ST_F32) : lora_save(&lo, tmp, o.model_dir))) goto done;
        if ((rc = out_commit(&out))) goto done;
    }
    /* the other ranks end when rank 0 has written OUT (or fail if it could not) */
    if ((rc = comm_barrier(dp))) goto done;
    if (lead) fprintf(stderr, "lr-tune: done in %.1f s; %.1f token rows forwarded per example (%s)\n", lr_now() - t_start,
            tu.examples ? (double)tu.rows_fwd / tu.examples : 0.0, o.pack ? "packed" : "unpacked");
done:
    if (out) {
        out_abort(&out); /* OUT_KEEP: OUT.part stays, for --resume */
        int n;
        long *v = ckpt_list(tmp, &n);
        if (keep && !n) rmdir(tmp); /* nothing there to resume from */
        else if (rc == LR_EINPUT && n) {
            char *msg = xstrdup(lr_errmsg());
            lr_err(rc, "%s (checkpoint-%ld, the newest of %s, is kept for --resume)", msg, v[0], tmp);
            free(msg);
        }
        free(v);
    }
    if (logf) fclose(logf);
    free(tmp);
    free(ord);
    free(mb);
    free(mbp);
    free(padbuf);
    json_decref(set);
    if (tu_live) tuner_free(&tu);
    comm_close(dp);
    lora_free(&lo);
    model_free(&m);
    tdata_free(&ds);
    if (rc && rk.world > 1) lr_err_prefix(rc, "rank %d of %d", rk.rank, rk.world);
    return rc ? lr_fail(rc) : 0;
}
