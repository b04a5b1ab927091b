/* settings.h: a header packed from a run's settings matches the same
 * settings, and a change of any one of them, a setting the file lacks or
 * one this run lacks is refused with LR_EINPUT naming that setting; file
 * identities are FNV-1a 64 of the bytes (computed here independently). */
#include "check.h"
#include "base/util.h"
#include "infer/settings.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const int32_t EOS[2] = {5, 9}, EOS2[2] = {5, 8};

static inf_settings base(void) {
    return (inf_settings){.mode = "generate", .device = "cpu", .input = "data/gsm8k/train.jsonl",
                          .input_id = {.hash = "00112233aabbccdd", .size = 1234}, .layout = "gsm8k", .field = NULL,
                          .id_field = NULL, .preset = "lightreasoner", .adapter = NULL, .max_new = 128,
                          .max_context = 2048, .limit = -1, .shard_k = 0, .shard_n = 1, .temperature = 0,
                          .top_p = 1, .top_k = 0, .seed = 0, .mass = 0.99999, .kmax = 256, .full = 0, .eos = EOS,
                          .neos = 2};
}

/* Packs `was` as a file's params and checks `now` against it. */
static int check(const inf_settings *was, const inf_settings *now) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    settings_pack(&pk, (void *)was);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int ok = msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS && off == sb.size;
    CHECK(ok && u.data.type == MSGPACK_OBJECT_MAP);
    int rc = settings_check("F.part", &u.data, now);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

#define REFUSED(key, stmt) do { inf_settings n = base(); stmt; int rc_ = check(&b, &n); \
    CHECKF(rc_ == LR_EINPUT && strstr(lr_errmsg(), "setting \"" key "\" differs") && strstr(lr_errmsg(), "F.part"), \
           "%s: rc %d: %s", key, rc_, lr_errmsg()); } while (0)

int main(void) {
    inf_settings b = base();
    CHECK(check(&b, &b) == 0);
    REFUSED("mode", n.mode = "follow");
    REFUSED("device", n.device = "cuda");
    REFUSED("input", n.input = "data/gsm8k/test.jsonl");
    REFUSED("input_hash", strcpy(n.input_id.hash, "00112233aabbccde"));
    REFUSED("input_size", n.input_id.size = 1235);
    REFUSED("layout", n.layout = "math500");
    REFUSED("field", n.field = "q");
    REFUSED("id_field", n.id_field = "id");
    REFUSED("preset", n.preset = "raw");
    REFUSED("prompt_hash", strcpy(n.prompt_id.hash, "0123456789abcdef"));
    REFUSED("adapter", n.adapter = "out/adapter");
    REFUSED("max_new_tokens", n.max_new = 8);
    REFUSED("max_context", n.max_context = 1024);
    REFUSED("limit", n.limit = 40);
    REFUSED("shard", n.shard_k = 1; n.shard_n = 2);
    REFUSED("temperature", n.temperature = 0.7);
    REFUSED("top_p", n.top_p = 0.95);
    REFUSED("top_k", n.top_k = 20);
    REFUSED("seed", n.seed = 1);
    REFUSED("top_mass", n.mass = 0.999);
    REFUSED("top_k_max", n.kmax = 32);
    REFUSED("full", n.full = 1);
    REFUSED("eos", n.eos = EOS2);
    REFUSED("eos", n.neos = 1);
    /* the message shows both values */
    { inf_settings n = base(); n.max_new = 8; check(&b, &n);
      CHECKF(strstr(lr_errmsg(), "made with 128, this run has 8") != NULL, "%s", lr_errmsg()); }
    /* a header without params, or with a setting this run does not know */
    CHECK(settings_check("F.part", NULL, &b) == LR_EINPUT && strstr(lr_errmsg(), "(none)"));
    {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        settings_pack(&pk, &b);
        /* the same map with one more entry: rewrite the map16 count */
        unsigned char *d = (unsigned char *)sb.data;
        CHECK(d[0] == 0xde && d[2] < 0xff);
        d[2]++;
        msgpack_pack_str(&pk, 5), msgpack_pack_str_body(&pk, "extra", 5), msgpack_pack_int(&pk, 1);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
        int rc = settings_check("F.part", &u.data, &b);
        CHECKF(rc == LR_EINPUT && strstr(lr_errmsg(), "setting \"extra\" differs"), "%s", lr_errmsg());
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
    /* file identities */
    char path[] = "/tmp/test_settings_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char text[] = "{\"q\": \"one\"}\n{\"q\": \"two\"}\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < sizeof text - 1; i++) h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
    char want[17];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
    inf_fileid id;
    CHECK(settings_fileid(path, &id) == 0 && id.size == (int64_t)(sizeof text - 1) && !strcmp(id.hash, want));
    unlink(path);
    CHECK(settings_fileid("-", &id) == 0 && id.size == -1 && id.hash[0] == 0);
    CHECK(settings_fileid(path, &id) == LR_EIO);
    CHECK_DONE();
}
