/* lr-infer: run one model over problems and record its next-token
 * distribution at every step (METHOD.md stage 1, steps 1-3).
 *
 *   generate mode (the expert): prompt each problem with the model's chat
 *     template (or a preset), generate as its generation_config.json says
 *     (or the flags), record the compact distribution of every step;
 *   follow mode (the amateur, --follow STREAM): teacher-force the exact
 *     prompt + generated ids of another lr-infer stream and record this
 *     model's log-probs of the tokens that stream listed, plus its own list.
 *
 * Output: a `dist` stream (docs/FORMATS.md), one record per problem, in
 * input order. The work is in lib/infer (run.h drives generate.h over an
 * engine; resolve.h fills what the flags leave unsaid; follow.h checks a
 * followed stream's tokenizer); this file is options, wiring and exit
 * codes. With -o FILE the stream is written to FILE.part, resumed from
 * there by a rerun of the same settings (output.h, settings.h), and renamed
 * onto FILE when complete.
 */
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"
#include "eval/benchdata.h"
#include "infer/engine.h"
#include "infer/follow.h"
#include "infer/gpu.h"
#include "infer/load.h"
#include "infer/output.h"
#include "infer/resolve.h"
#include "infer/run.h"
#include "infer/settings.h"
#include "io/stream.h"
#include "model/prompt.h"
#include "model/tokenizer.h"

#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model_dir, *adapter, *data, *layout, *field, *id_field, *preset, *prompt_file, *follow, *out;
    int max_new, shard_k, shard_n, batch, full, progress, threads, kmax, max_context, top_k, help, static_batches, zstd_level;
    long limit, kv_pages;
    int kv_page, no_shared_prefix;
    const char *device;
    double temperature, top_p, mass;
    uint64_t seed;
    int n_extra_eos, nstop, shots;
    const char *extra_eos_str[16];
    const char *stop[16];
} opts;

static void usage(FILE *f) {
    fprintf(f,
        "usage: lr-infer --model DIR [options] [--data FILE | --follow STREAM] [-o OUT]\n"
        "Runs a Hugging Face model folder over problems and writes a `dist` stream:\n"
        "every step's token and the model's compact next-token distribution.\n"
        "\n"
        "  --adapter DIR          a PEFT LoRA adapter (lr-tune output) folded into the\n"
        "                         weights at load time; the header's model identity\n"
        "                         then covers base + adapter\n"
        "Generate mode (default): problems are JSON lines (FILE or stdin).\n"
        "  --data FILE            problems file (default stdin); the benchmark layouts\n"
        "                         (gsm8k, math500, svamp, asdiv, minerva_math,\n"
        "                         olympiadbench, mmlu_stem) are guessed from the path\n"
        "  --layout NAME          force a known layout\n"
        "  --field NAME           any JSON lines file: the question is this string field\n"
        "  --id-field NAME        ... and the problem id this one (default: file stem:line),\n"
        "                         e.g. `lr-eval prompts` output: --field prompt --id-field id\n"
        "                         --preset raw\n"
        "  (default prompt)       the model's chat template, system \"Please reason step by\n"
        "                         step.\" (ChatML/Qwen, DeepSeek-R1, Llama 3; docs/TOKENIZER.md)\n"
        "  --preset NAME          prompt preset instead: lightreasoner, qwen25-math-cot, raw,\n"
        "                         or toolkit: the Qwen2.5-Math toolkit's prompt for the\n"
        "                         benchmark read (5-shot for mmlu_stem), for evaluation\n"
        "  --shots N              with --preset toolkit: mmlu_stem's examples, 5 (default,\n"
        "                         the toolkit's script) or 0 (the authors' command)\n"
        "  --prompt-file F        a template file with {question} instead\n"
        "  --max-new-tokens N     default 128\n"
        "  --temperature X        0 = greedy; > 0 samples. Defaults for these three: what\n"
        "                         generation_config.json says (docs/MODEL.md)\n"
        "  --top-p X              nucleus sampling mass\n"
        "  --top-k N              sample among the N most probable tokens only, 0 = all\n"
        "  --seed N               sampling seed (default 0); each problem's draw depends\n"
        "                         only on the seed and its index, not on batching\n"
        "  --eos TOKEN            also stop at this token (repeatable), e.g. '<|im_end|>'\n"
        "  --stop TEXT            also stop once the new text contains TEXT (repeatable,\n"
        "                         special tokens skipped), e.g. '</s>'; finish \"stop\"\n"
        "  --limit N              only the first N problems of the input\n"
        "  --shard K/N            only problems whose index is K mod N; `lr-dump --cat` joins\n"
        "                         the N outputs into the unsharded run's stream\n"
        "Follow mode:\n"
        "  --follow STREAM        teacher-force the prompt + tokens of every record of\n"
        "                         STREAM (a dist stream, '-' = stdin) and record this\n"
        "                         model's log-probs of the tokens STREAM listed\n"
        "Distribution recorded at each step:\n"
        "  --top-mass X           list the most probable tokens until they cover X of the\n"
        "                         probability (default 0.99999) ...\n"
        "  --top-k-max N          ... but at most N of them (default 256; 32 in follow mode,\n"
        "                         where this model's own list is informational: the KL\n"
        "                         uses its log-probs of the followed list); the rest is\n"
        "                         the step's tail mass\n"
        "  --full                 also record whole-vocabulary log-probs (large; for checks)\n"
        "Running:\n"
        "  -o, --output FILE      write FILE (default stdout), through FILE.part: an\n"
        "                         interrupted run (Ctrl-C, a crash) leaves FILE.part, and\n"
        "                         rerunning the same command resumes it after the last\n"
        "                         resume point (one every --batch records); FILE\n"
        "                         appears only when complete. A\n"
        "                         rerun whose settings differ from FILE.part's header\n"
        "                         (data, limit, shard, tokens, sampling, preset, lists,\n"
        "                         mode, model, device) is refused, exit 2, naming the\n"
        "                         setting; remove FILE.part to start over. A complete\n"
        "                         FILE is continued by the same command (only problems\n"
        "                         it lacks are run) and replaced by another one. FILE\n"
        "                         must not be one of the inputs.\n"
        "  --max-context N        positions per sequence: prompt + new tokens (default:\n"
        "                         the model's max_position_embeddings, at most 2048)\n"
        "  --batch N              problems run at once (default 8 on cpu; on cuda 1024 to\n"
        "                         generate, 64 to follow): the slots; on cuda the live\n"
        "                         problems are also bounded by the KV cache's pages\n"
        "  --kv-pages N           cuda: KV cache pages (default: 90%% of the device memory\n"
        "                         free after the weights, at most --batch full contexts);\n"
        "                         generation admits problems by free pages and preempts\n"
        "                         (later resumes) the newest when they run out\n"
        "  --kv-page N            cuda: positions a page, a multiple of 64 (default 64);\n"
        "                         >= --max-context: one page a slot. --kv-pages and\n"
        "                         --kv-page change speed and memory; the records only\n"
        "                         by rounding where a small pool preempts\n"
        "  --no-shared-prefix     continuous generation and --follow: compute every\n"
        "                         prompt whole. By default the longest start that at\n"
        "                         least half of the first --batch prompts (at most 64;\n"
        "                         --follow: of each batch) share is computed once and\n"
        "                         every prompt that starts with it runs on it (cuda:\n"
        "                         its whole KV pages, shared; cpu: a copy of its keys\n"
        "                         and values); one stderr line says so. The records\n"
        "                         differ only by float rounding\n"
        "  --batching MODE        generate: continuous (default): a finished problem's\n"
        "                         place goes to the next one at the next forward pass;\n"
        "                         static: --batch problems at a time, each batch running\n"
        "                         to its longest answer. Same records either way\n"
        "  --threads N            CPU threads (default: all cores)\n"
        "  --device D             cpu, cuda or auto (default): cuda when a GPU is present.\n"
        "                         On cuda the weights are bf16 on the device (from the\n"
        "                         checkpoint, or rounded from float32 after --adapter),\n"
        "                         and the lists are extracted there; --top-k-max <= 1024\n"
        "  --zstd-level N         compression level of the output stream, 1..19 (default 3)\n"
        "  --progress             progress bar on stderr even when it is not a terminal\n"
        "  -h, --help             this help\n"
        "Exit codes: 0 ok, 1 usage, 2 bad input (a bad problem is reported, skipped, and\n"
        "makes the exit code 2 after the others are written; the run stops after %d\n"
        "failed problems; a resume with other settings), 3 I/O, 4 GPU, 130 interrupted\n"
        "(SIGINT/SIGTERM: FILE.part is kept for the rerun).\n",
        RUN_MAX_FAILURES);
}

static int parse_args(opts *o, int argc, char **argv) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'A'}, {"data", required_argument, 0, 'd'},
        {"layout", required_argument, 0, 'L'}, {"field", required_argument, 0, 'F'}, {"id-field", required_argument, 0, 'I'},
        {"preset", required_argument, 0, 'P'}, {"prompt-file", required_argument, 0, 'T'},
        {"follow", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"limit", required_argument, 0, 'l'},
        {"shard", required_argument, 0, 's'}, {"batch", required_argument, 0, 'b'},
        {"batching", required_argument, 0, 'B'},
        {"full", no_argument, 0, 'u'}, {"progress", no_argument, 0, 'p'},
        {"threads", required_argument, 0, 't'}, {"temperature", required_argument, 0, 'e'},
        {"top-p", required_argument, 0, 'r'}, {"top-k", required_argument, 0, 'k'}, {"seed", required_argument, 0, 'S'},
        {"top-mass", required_argument, 0, 'M'}, {"top-k-max", required_argument, 0, 'K'},
        {"eos", required_argument, 0, 'E'}, {"device", required_argument, 0, 'D'},
        {"max-context", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
        {"zstd-level", required_argument, 0, 'Z'}, {"stop", required_argument, 0, 'X'},
        {"shots", required_argument, 0, 'H'}, {"kv-pages", required_argument, 0, 'V'},
        {"kv-page", required_argument, 0, 'W'}, {"no-shared-prefix", no_argument, 0, 'N'}, {0, 0, 0, 0},
    };
    /* preset NULL: the model's chat template; sampling -1: generation_config.json */
    *o = (opts){.preset = NULL, .max_new = 128, .limit = -1, .shard_n = 1, .device = "auto", .temperature = -1,
                .top_p = -1, .top_k = -1, .mass = CD_DEFAULT_MASS, .shots = BD_MMLU_MAX_SHOTS};
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 'A': o->adapter = optarg; break;
        case 'd': o->data = optarg; break;
        case 'L': o->layout = optarg; break;
        case 'F': o->field = optarg; break;
        case 'I': o->id_field = optarg; break;
        case 'P': o->preset = optarg; break;
        case 'T': o->prompt_file = optarg; break;
        case 'f': o->follow = optarg; break;
        case 'o': o->out = optarg; break;
        case 'n': rc = opt_int("--max-new-tokens", optarg, 1, 1 << 20, &o->max_new); break;
        case 'l': rc = opt_long("--limit", optarg, 0, 1L << 40, &o->limit); break;
        case 'b': rc = opt_int("--batch", optarg, 1, 4096, &o->batch); break;
        case 'B':
            if (!strcmp(optarg, "static")) o->static_batches = 1;
            else if (!strcmp(optarg, "continuous")) o->static_batches = 0;
            else rc = lr_err(LR_EUSAGE, "--batching %s: expected static or continuous", optarg);
            break;
        case 't': rc = opt_int("--threads", optarg, 1, 1024, &o->threads); break;
        case 'K': rc = opt_int("--top-k-max", optarg, 1, 1 << 20, &o->kmax); break;
        case 'k': rc = opt_int("--top-k", optarg, 0, 1 << 30, &o->top_k); break;
        case 'C': rc = opt_int("--max-context", optarg, 1, 1 << 22, &o->max_context); break;
        case 'V': rc = opt_long("--kv-pages", optarg, 1, 1L << 30, &o->kv_pages); break;
        case 'W': rc = opt_int("--kv-page", optarg, 1, 1 << 22, &o->kv_page); break;
        case 'Z': rc = opt_int("--zstd-level", optarg, LRS_ZSTD_MIN, LRS_ZSTD_MAX, &o->zstd_level); break;
        case 'e': rc = opt_double("--temperature", optarg, 0, 100, &o->temperature); break;
        case 'r': rc = opt_double("--top-p", optarg, 1e-9, 1, &o->top_p); break;
        case 'M': rc = opt_double("--top-mass", optarg, 0, 1, &o->mass); break;
        case 'S': rc = opt_u64("--seed", optarg, &o->seed); break;
        case 'u': o->full = 1; break;
        case 'N': o->no_shared_prefix = 1; break;
        case 'p': o->progress = 1; break;
        case 'E':
            if (o->n_extra_eos == 16) rc = lr_err(LR_EUSAGE, "--eos: at most 16");
            else o->extra_eos_str[o->n_extra_eos++] = optarg;
            break;
        case 'H':
            rc = opt_int("--shots", optarg, 0, BD_MMLU_MAX_SHOTS, &o->shots);
            if (!rc && o->shots != 0 && o->shots != BD_MMLU_MAX_SHOTS)
                rc = lr_err(LR_EUSAGE, "--shots: 0 or %d (the toolkit's mmlu_stem examples), got %s", BD_MMLU_MAX_SHOTS, optarg);
            break;
        case 'X':
            if (o->nstop == 16) rc = lr_err(LR_EUSAGE, "--stop: at most 16");
            else if (!*optarg) rc = lr_err(LR_EUSAGE, "--stop: an empty string would stop at once");
            else o->stop[o->nstop++] = optarg;
            break;
        case 'D': o->device = optarg; break;
        case 's': {
            char *slash = strchr(optarg, '/');
            if (!slash) { rc = lr_err(LR_EUSAGE, "--shard: expected K/N with 0 <= K < N, got \"%s\"", optarg); break; }
            *slash = 0;
            rc = opt_int("--shard N", slash + 1, 1, 1 << 30, &o->shard_n);
            if (!rc) rc = opt_int("--shard K", optarg, 0, o->shard_n - 1, &o->shard_k);
            *slash = '/';
            break;
        }
        case 'h': o->help = 1; return 0;
        default: return lr_err(LR_EUSAGE, "see --help");
        }
    }
    if (rc) return rc;
    if (optind < argc) return lr_err(LR_EUSAGE, "unexpected argument \"%s\" (see --help)", argv[optind]);
    if (!o->model_dir) return lr_err(LR_EUSAGE, "--model DIR is required (see --help)");
    if (o->id_field && !o->field) return lr_err(LR_EUSAGE, "--id-field goes with --field");
    if (o->follow && (o->data || o->field || o->layout))
        return lr_err(LR_EUSAGE, "--follow reads its problems from the followed stream; drop --data/--field/--layout");
    if (o->out && !strcmp(o->out, "-")) o->out = NULL;
    return 0;
}

int main(int argc, char **argv) {
    lr_progname = "lr-infer";
    opts o;
    model m = {0};
    tok_t *tok = NULL;
    engine e = {0};
    gen_ctx g = {0};
    inf_run run = {0};
    prob_source src = {0};
    lrs_reader *fr = NULL;
    lrs_writer *w = NULL;
    prompt_chat *chat = NULL;
    tok_sig sig = {0};
    char *part = NULL;
    int32_t eos[MCFG_MAX_EOS + 16];
    int neos = 0, fresh = 1, engine_up = 0;
    eng_device dev;
    int rc = parse_args(&o, argc, argv);
    if (rc || o.help) goto out;
    if (o.out) {
        part = xmalloc(strlen(o.out) + 6);
        sprintf(part, "%s.part", o.out);
        inf_inputs in = {o.model_dir, o.data, o.follow, o.prompt_file};
        if ((rc = inf_output_check(o.out, part, &in))) goto out;
    }
    out_signals(); /* SIGINT/SIGTERM exit 130; FILE.part stays for the rerun */
    if (o.threads) openblas_set_num_threads(o.threads);
    if ((rc = eng_parse_device(o.device, &dev))) goto out;
    /* continuous batching keeps every slot busy, so a GPU takes many */
    if (!o.batch) o.batch = dev != ENG_CUDA ? 8 : o.follow ? 64 : 1024;
    /* The cuda backend uploads bf16 straight from the checkpoint. */
    if ((rc = inf_load_model(&m, o.model_dir, o.adapter, dev == ENG_CUDA))) goto out;
    if ((rc = tok_load(&tok, o.model_dir))) goto out;
    if ((rc = inf_resolve_prompt(&o.preset, &chat, o.follow != NULL, o.prompt_file, o.model_dir))) goto out;
    inf_sampling smp = {o.temperature, o.top_p, o.top_k};
    const char *sampling = inf_resolve_sampling(&smp, &m.cfg, o.follow != NULL, o.model_dir);
    o.temperature = smp.temperature, o.top_p = smp.top_p, o.top_k = smp.top_k;
    tok_sig_of(tok, &sig);
    if (!o.kmax) o.kmax = o.follow ? CD_FOLLOW_KMAX : CD_DEFAULT_KMAX;
    for (int i = 0; i < m.cfg.neos; i++) eos[neos++] = m.cfg.eos[i];
    for (int i = 0; i < o.n_extra_eos; i++) {
        int32_t id = tok_id(tok, o.extra_eos_str[i]);
        if (id < 0) { rc = lr_err(LR_EUSAGE, "--eos %s: no such token in the tokenizer", o.extra_eos_str[i]); goto out; }
        eos[neos++] = id;
    }
    int ctxlen = o.max_context ? o.max_context : (m.cfg.max_pos < 2048 ? m.cfg.max_pos : 2048);
    gen_opts go = {.V = m.cfg.V, .co = {.mass = o.mass, .kmax = o.kmax < m.cfg.V ? o.kmax : m.cfg.V, .kmin = 1},
                   .sample = o.temperature > 0, .smp = {.temperature = o.temperature, .top_p = o.top_p, .top_k = o.top_k},
                   .max_new = o.max_new, .full = o.full, .eos = eos, .neos = neos, .stop = o.stop,
                   .nstop = o.nstop, .tok = tok};
    gpu_kv kv = {.page = o.kv_page, .pages = o.kv_pages};
    if ((rc = eng_init_kv(&e, &m, dev, o.batch, ctxlen, dev == ENG_CUDA ? 4096 : 512, go.co.kmax, o.threads, &kv)))
        goto out;
    engine_up = 1;
    if (dev == ENG_CUDA) {
        char name[256];
        gpu_kv_info ki;
        gpu_device_count(name, sizeof name);
        eng_pages(&e, &ki);
        fprintf(stderr, "%s: device cuda (%s, %s backend), KV cache %d pages of %d positions (%.1f MiB, %.1f full "
                "contexts)\n", lr_progname, name, gpu_backend(), ki.pages, ki.page, ki.pages * (double)ki.page_bytes / 1048576.0,
                (double)ki.pages / ki.per_slot);
    }
    gen_init(&g, &e, &go);
    run_opts ro = {.model_dir = o.model_dir, .preset = o.preset, .chat = chat, .prompt_file = o.prompt_file,
                   .mmlu_shots = o.shots, .limit = o.limit,
                   .shard_k = o.shard_k, .shard_n = o.shard_n, .batch = o.batch, .seed = o.seed,
                   .static_batches = o.static_batches, .shared_prefix = !o.no_shared_prefix,
                   .max_failures = RUN_MAX_FAILURES};
    run_init(&run, &ro, &g, tok);

    lrs_header h;
    lrs_header_init(&h, "dist", 1, "lr-infer", argc, argv);
    h.model = (lrs_ident){.name = m.name, .hash = m.hash_hex, .vocab = m.cfg.V};
    h.tokenizer = (lrs_ident){.name = m.name, .hash = (char *)tok_hash(tok), .vocab = tok_vocab_size(tok)};
    h.zstd_level = o.zstd_level;
    inf_settings s = {.mode = o.follow ? "follow" : "generate", .device = eng_device_name(dev),
                      .input = o.follow ? o.follow : o.data ? o.data : "-", .layout = "", .field = o.field,
                      .id_field = o.id_field, .preset = o.prompt_file ? o.prompt_file : o.preset,
                      .adapter = o.adapter, .max_new = o.max_new, .max_context = ctxlen, .limit = o.limit,
                      .shard_k = o.shard_k, .shard_n = o.shard_n, .temperature = o.temperature, .top_p = o.top_p,
                      .top_k = o.top_k, .seed = o.seed, .mass = o.mass, .kmax = o.kmax, .full = o.full, .eos = eos,
                      .neos = neos, .stop = o.stop, .nstop = o.nstop, .mmlu_shots = o.shots, .chat_template = chat ? prompt_chat_family(chat) : "", .sampling = sampling,
                      .sig = &sig, .followed_tokenizer = ""};
    if ((rc = settings_fileid(s.input, &s.input_id)) || (rc = settings_fileid(o.prompt_file, &s.prompt_id))) goto out;
    if (o.follow) {
        if ((rc = lrs_open_read(&fr, o.follow, "dist"))) goto out;
        s.followed_tokenizer = lrs_header_of(fr)->tokenizer.hash;
        if ((rc = inf_follow_tokenizer(fr, &h, &sig, &s.added_ids_differ))) goto out;
    } else {
        if ((rc = prob_open(&src, o.data, o.layout, o.field, o.id_field))) goto out;
        if (prob_layout(&src) >= 0) s.layout = bd_layout_name((bd_layout)prob_layout(&src));
        if (!o.prompt_file && !strcmp(o.preset, "toolkit") && prob_layout(&src) < 0) {
            rc = lr_err(LR_EUSAGE, "--preset toolkit needs a benchmark file of a known layout (not --field)");
            goto out;
        }
    }
    if ((rc = inf_output_open(&w, o.out, part, &h, &s, &run, &fresh))) goto out;
    uint64_t total = 0;
    if (!o.follow && (total = prob_count_lines(o.data))) {
        if (o.limit >= 0 && (uint64_t)o.limit < total) total = (uint64_t)o.limit;
        total = (total + o.shard_n - 1 - o.shard_k) / o.shard_n;
    }
    progress_init(&run.prog, lr_progress_wanted(o.progress), "problems", total);
    rc = o.follow ? run_follow(&run, fr, w) : run_generate(&run, &src, w);
    progress_end(&run.prog);
    if (!rc && !run.failed) {
        double dt = lr_now() - run.prog.t0;
        fprintf(stderr, "%s: %ld problems written, %llu tokens in %.2f s (%.1f tok/s), %llu forward passes\n",
                lr_progname, run.written, (unsigned long long)run.prog.tokens, dt, dt > 0 ? run.prog.tokens / dt : 0.0,
                (unsigned long long)g.calls);
        run_report_prefix(&run);
        if (dev == ENG_CUDA && !o.follow && !o.static_batches) {
            fprintf(stderr, "%s: at most %d problems live at once, %ld preemptions\n", lr_progname, run.peak_live,
                    run.preemptions);
            fprintf(stderr, "%s: %llu of %llu forward passes queued one step ahead, %ld rows of them dropped (their "
                    "problems had ended)\n", lr_progname, (unsigned long long)g.ahead, (unsigned long long)g.calls,
                    run.wasted);
        } else if (dev == ENG_CUDA && o.follow)
            fprintf(stderr, "%s: %llu of %llu forward passes queued one step ahead\n", lr_progname,
                    (unsigned long long)g.ahead, (unsigned long long)g.calls);
    }
out:
    if (w) {
        if (rc) lrs_abort(w);
        else rc = lrs_close(w);
        /* a run that wrote nothing leaves no FILE.part of its own */
        if (rc && part && fresh && run.written == 0) unlink(part);
        else if (!rc && part) rc = inf_output_commit(part, o.out);
    }
    if (o.help) { /* one write, so `lr-infer --help | grep -q` never meets SIGPIPE */
        static char big[1 << 14];
        setvbuf(stdout, big, _IOFBF, sizeof big);
        usage(stdout);
        fflush(stdout);
    }
    int code = rc ? lr_fail(rc) : 0;
    if (!rc && run.failed) { /* one bad problem: its own line is the one line */
        if (run.failed > 1)
            fprintf(stderr, "%s: %ld problems failed (reported above); %ld written\n", lr_progname, run.failed,
                    run.written);
        code = LR_EINPUT;
    }
    prob_close(&src);
    lrs_close_read(fr);
    run_free(&run);
    gen_free(&g);
    if (engine_up) eng_free(&e);
    if (tok) tok_free(tok);
    prompt_chat_free(chat);
    tok_sig_free(&sig);
    model_free(&m);
    free(part);
    return code;
}
