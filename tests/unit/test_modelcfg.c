/* test_modelcfg: config.json as real checkpoints write it (Qwen2.5-0.5B-
 * Instruct, transformers 4.x; a transformers-5 rope_parameters config;
 * Llama 3.2 with llama3 RoPE scaling, which must be refused), and
 * generation_config.json's sampling fields as Qwen2.5-Instruct,
 * Qwen2.5-Math and DeepSeek-R1-Distill-Qwen ship them (transformers'
 * defaults for absent fields: do_sample false, temperature 1, top_p 1,
 * top_k 50), bad fields named. */
#include "check.h"
#include "model/modelcfg.h"
#include "base/util.h"

#include <string.h>
#include <sys/stat.h>

static char dir[1024];

static void put(const char *name, const char *text) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static const char QWEN25[] = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643,"
    " \"eos_token_id\": 151645, \"hidden_act\": \"silu\", \"hidden_size\": 896, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 4864, \"max_position_embeddings\": 32768, \"max_window_layers\": 21, \"model_type\": \"qwen2\","
    " \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06,"
    " \"rope_theta\": 1000000.0, \"sliding_window\": 32768, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.43.1\", \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
static const char QWEN25_GEN[] = "{\"bos_token_id\": 151643, \"pad_token_id\": 151643, \"do_sample\": true,"
    " \"eos_token_id\": [151645, 151643], \"repetition_penalty\": 1.1, \"temperature\": 0.7, \"top_p\": 0.8, \"top_k\": 20}";

int main(void) {
    const char *t = getenv("LR_TMP");
    snprintf(dir, sizeof dir, "%s/cfg", t ? t : "/tmp");
    mkdir(dir, 0777);
    mcfg c;
    put("config.json", QWEN25);
    put("generation_config.json", QWEN25_GEN);
    int rc = mcfg_load(&c, dir);
    CHECKF(rc == 0, "%s", lr_errmsg());
    CHECK(!strcmp(c.model_type, "qwen2") && c.C == 896 && c.I == 4864 && c.L == 24 && c.NH == 14 && c.NKV == 2);
    CHECK(c.HD == 64 && c.V == 151936 && c.tied == 1 && c.qkv_bias == 1 && c.o_bias == 0);
    CHECK(c.rope_theta == 1e6 && c.rms_eps == 1e-6 && c.bos == 151643 && c.max_pos == 32768);
    CHECK(c.neos == 2 && c.eos[0] == 151645 && c.eos[1] == 151643);
    CHECK(c.gen_file && c.do_sample == 1 && c.temperature == 0.7 && c.top_p == 0.8 && c.top_k == 20);
    /* DeepSeek-R1-Distill-Qwen-1.5B's file: sampling, top_k left to the default. */
    put("generation_config.json", "{\"_from_model_config\": true, \"bos_token_id\": 151646, \"eos_token_id\": 151643,"
        " \"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.95, \"transformers_version\": \"4.39.3\"}");
    CHECKF(mcfg_load(&c, dir) == 0, "%s", lr_errmsg());
    CHECK(c.do_sample == 1 && c.temperature == 0.6 && c.top_p == 0.95 && c.top_k == 50);
    /* Qwen2.5-Math-1.5B's: greedy. */
    put("generation_config.json", "{\"bos_token_id\": 151643, \"do_sample\": false, \"eos_token_id\": 151643,"
        " \"max_new_tokens\": 2048, \"transformers_version\": \"4.37.0\"}");
    CHECKF(mcfg_load(&c, dir) == 0, "%s", lr_errmsg());
    CHECK(c.gen_file && c.do_sample == 0 && c.temperature == 1.0 && c.top_p == 1.0 && c.top_k == 50);
    /* Bad sampling fields: one message naming the file and the field. */
    static const struct { const char *gen, *msg; } badgen[] = {
        {"{\"do_sample\": 1}", "field \"do_sample\""},
        {"{\"temperature\": \"0.6\"}", "field \"temperature\""},
        {"{\"do_sample\": true, \"temperature\": 0}", "field \"temperature\": must be > 0"},
        {"{\"top_p\": 1.5}", "field \"top_p\""},
        {"{\"top_p\": 0}", "field \"top_p\""},
        {"{\"top_k\": -1}", "field \"top_k\""},
        {"{\"top_k\": 2.5}", "field \"top_k\""},
        {"[]", "generation_config.json: not a JSON object"},
        {"{\"top_k\": ", "generation_config.json: line 1"},
    };
    for (size_t i = 0; i < sizeof badgen / sizeof badgen[0]; i++) {
        put("generation_config.json", badgen[i].gen);
        rc = mcfg_load(&c, dir);
        CHECKF(rc == LR_EINPUT && strstr(lr_errmsg(), "generation_config.json") && strstr(lr_errmsg(), badgen[i].msg) &&
               !strchr(lr_errmsg(), '\n'), "gen case %zu: rc %d, %s", i, rc, lr_errmsg());
    }
    /* Nulls are absent fields. */
    put("generation_config.json", "{\"do_sample\": null, \"temperature\": null, \"top_p\": null, \"top_k\": null}");
    CHECK(mcfg_load(&c, dir) == 0 && c.do_sample == 0 && c.top_k == 50);
    put("generation_config.json", QWEN25_GEN);

    /* transformers 5 layout: rope_parameters instead of rope_theta */
    put("config.json", "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 32, \"vocab_size\": 300, \"attention_bias\": true,"
        " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}, \"eos_token_id\": [5, 6]}");
    put("generation_config.json", "{\"eos_token_id\": 6}");
    rc = mcfg_load(&c, dir);
    CHECKF(rc == 0, "%s", lr_errmsg());
    CHECK(c.rope_theta == 5e5 && c.HD == 32 && c.NKV == 1 && c.qkv_bias && c.o_bias && !c.tied && c.bos == -1);
    CHECK(c.neos == 2 && c.eos[0] == 5 && c.eos[1] == 6);

    struct { const char *cfg, *msg; } bad[] = {
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 300, \"rope_scaling\": {\"factor\": 32.0, \"rope_type\": \"llama3\"}}",
         "config.json: field \"rope_scaling\": only null is supported"},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 300, \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
         "field \"rope_parameters\": only rope_type \"default\""},
        {"{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"vocab_size\": 300}",
         "num_key_value_heads\": 3 does not divide"},
        {"{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 300, \"use_sliding_window\": true}", "sliding-window"},
        {"{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 300}",
         "field \"intermediate_size\": missing"},
        {"{\"model_type\": \"qwen2\", \"hidden_size\": \"64\", \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 300}", "field \"hidden_size\": expected an integer"},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 300, \"hidden_act\": \"gelu\"}", "only \"silu\""},
        {"{\"model_type\": \"gemma\"}", "\"gemma\" unsupported"},
        {"[1, 2]", "not a JSON object"},
        {"{\"model_type\": ", "config.json: line 1"},
    };
    put("generation_config.json", "{}");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("config.json", bad[i].cfg);
        rc = mcfg_load(&c, dir);
        CHECKF(rc == LR_EINPUT && strstr(lr_errmsg(), bad[i].msg), "case %zu: rc %d, %s", i, rc, lr_errmsg());
    }
    put("config.json", QWEN25);
    put("generation_config.json", "{\"eos_token_id\": \"x\"}");
    rc = mcfg_load(&c, dir);
    CHECKF(rc == LR_EINPUT && strstr(lr_errmsg(), "generation_config.json: field \"eos_token_id\""), "%s", lr_errmsg());
    snprintf(dir, sizeof dir, "%s/nonexistent", t ? t : "/tmp");
    CHECK(mcfg_load(&c, dir) == LR_EIO);
    CHECK_DONE();
}
