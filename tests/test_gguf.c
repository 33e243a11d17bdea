/* test_gguf.c - GGUF reader and writer: round trip, every metadata type, the real
 * SmolLM2 file, and malformed files refused with a message (never a crash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"
#include "rq_test.h"
#include "util.h"

static float t_data[2 * 32];

/* A small valid file: a few keys of several types, an F32 and a Q8_0 tensor. */
static char *write_sample(size_t *len) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/rq_test_gguf_%d.gguf", (int)getpid());
    rq_gguf_writer *w = rq_gguf_writer_new();
    rq_gguf_set_str(w, "general.architecture", "llama");
    rq_gguf_set_u32(w, "llama.block_count", 7);
    rq_gguf_set_i32(w, "test.neg", -5);
    rq_gguf_set_u64(w, "test.big", 1ull << 40);
    rq_gguf_set_f32(w, "test.eps", 1e-5f);
    rq_gguf_set_bool(w, "test.flag", true);
    rq_gguf_set_u32(w, "llama.block_count", 8); /* replaces the first value */
    for (int i = 0; i < 64; i++) t_data[i] = (float)i * 0.5f - 3.0f;
    int64_t ne[2] = {32, 2};
    CHECK(rq_gguf_add_tensor(w, "a.weight", RQ_GGML_F32, 2, ne, t_data, sizeof t_data) == 0);
    static uint8_t q8[34];
    memset(q8, 0, sizeof q8);
    q8[1] = 0x3c; /* d = 1.0 in fp16 */
    for (int i = 0; i < 32; i++) q8[2 + i] = (uint8_t)(int8_t)(i - 16);
    int64_t ne1[1] = {32};
    CHECK(rq_gguf_add_tensor(w, "b.weight", RQ_GGML_Q8_0, 1, ne1, q8, sizeof q8) == 0);
    CHECK(rq_gguf_add_tensor(w, "b.weight", RQ_GGML_Q8_0, 1, ne1, q8, sizeof q8) != 0); /* duplicate */
    CHECK(rq_gguf_add_tensor(w, "c.weight", RQ_GGML_Q8_0, 1, ne1, q8, 33) != 0);         /* size mismatch */
    CHECK(rq_gguf_write(w, path) == 0);
    rq_gguf_writer_free(w);
    char *buf;
    CHECK(rq_read_file(path, &buf, len) == 0);
    unlink(path);
    return buf;
}

static void test_round_trip(void) {
    size_t len;
    char *buf = write_sample(&len);
    rq_gguf *g;
    REQUIRE(rq_gguf_open_mem(buf, len, "sample", &g) == 0);
    CHECK(g->version == 3 && g->n_kv == 6 && g->n_tensors == 2);
    int64_t v;
    CHECK(rq_gguf_get_int(g, "llama.block_count", &v) == 0 && v == 8);
    CHECK(rq_gguf_get_int(g, "test.neg", &v) == 0 && v == -5);
    CHECK(rq_gguf_get_int(g, "test.big", &v) == 0 && v == (1ll << 40));
    double f;
    CHECK(rq_gguf_get_float(g, "test.eps", &f) == 0 && (float)f == 1e-5f);
    bool b = false;
    CHECK(rq_gguf_get_bool(g, "test.flag", &b) == 0 && b);
    rq_str s;
    CHECK(rq_gguf_get_str(g, "general.architecture", &s) == 0 && rq_str_eq(s, "llama"));
    CHECK(rq_gguf_get_int(g, "missing.key", &v) == 1);
    CHECK(rq_gguf_get_int(g, "general.architecture", &v) == -1 && strstr(rq_error(), "general.architecture"));
    const rq_gguf_tensor *a = rq_gguf_tensor_find(g, "a.weight");
    REQUIRE(a != NULL);
    CHECK(a->ne[0] == 32 && a->ne[1] == 2 && a->type == RQ_GGML_F32 && a->nbytes == sizeof t_data);
    CHECK(memcmp(a->data, t_data, sizeof t_data) == 0);
    CHECK(((uintptr_t)a->data - (uintptr_t)buf) % 32 == 0);
    const rq_gguf_tensor *q = rq_gguf_tensor_find(g, "b.weight");
    REQUIRE(q != NULL);
    float out[32];
    CHECK(rq_ggml_to_float(q->type, q->data, out, 32) == 0);
    CHECK(out[0] == -16.0f && out[31] == 15.0f);
    rq_gguf_close(g);
    free(buf);
}

/* Every truncation of a valid file is refused, with a message. */
static void test_truncations(void) {
    size_t len;
    char *buf = write_sample(&len);
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        char *cut = rq_malloc(n ? n : 1);
        memcpy(cut, buf, n);
        rq_gguf *g = NULL;
        if (rq_gguf_open_mem(cut, n, "cut", &g) != 0) {
            refused++;
            if (!strstr(rq_error(), "cut")) CHECKF(0, "no file name in message: %s", rq_error());
        } else {
            rq_gguf_close(g);
        }
        free(cut);
    }
    /* only the final padding bytes after the last tensor's data may go missing... except they hold data:
     * the last tensor ends exactly at len - padding, so a cut inside the padding is still complete */
    CHECKF(refused >= (int)len - 31, "refused %d of %zu truncations", refused, len);
    free(buf);
}

/* Helpers to patch the sample at known offsets. */
static size_t off_after_header(void) { return 4 + 4 + 8 + 8; }

static int open_patched(const char *buf, size_t len, size_t at, const void *bytes, size_t n, const char *expect) {
    char *c = rq_malloc(len);
    memcpy(c, buf, len);
    memcpy(c + at, bytes, n);
    rq_gguf *g = NULL;
    int rc = rq_gguf_open_mem(c, len, "patched", &g);
    if (rc == 0) rq_gguf_close(g);
    int ok = rc != 0 && strstr(rq_error(), expect) != NULL;
    if (!ok) printf("  expected failure mentioning '%s', got rc=%d msg=%s\n", expect, rc, rc ? rq_error() : "-");
    free(c);
    return ok;
}

static size_t find(const char *buf, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(buf + i, needle, n)) return i;
    return 0;
}

static void test_malformed(void) {
    size_t len;
    char *buf = write_sample(&len);
    CHECK(open_patched(buf, len, 0, "GGUX", 4, "bad magic"));
    uint32_t v1 = 1, v9 = 9;
    CHECK(open_patched(buf, len, 4, &v1, 4, "version 1"));
    CHECK(open_patched(buf, len, 4, &v9, 4, "version 9"));
    uint64_t huge = UINT64_MAX / 2;
    CHECK(open_patched(buf, len, 8, &huge, 8, "tensor count"));
    CHECK(open_patched(buf, len, 16, &huge, 8, "key/value count"));
    /* first key's length overflowing */
    CHECK(open_patched(buf, len, off_after_header(), &huge, 8, "truncated"));
    /* unknown value type of the first key (after its 8-byte length and 20-byte name) */
    uint32_t bad_type = 77;
    CHECK(open_patched(buf, len, off_after_header() + 8 + strlen("general.architecture"), &bad_type, 4,
                       "unknown value type"));
    /* duplicate key: rename test.neg to test.big */
    size_t at = find(buf, len, "test.neg");
    CHECK(at && open_patched(buf, len, at, "test.big", 8, "duplicate key"));
    /* duplicate tensor name */
    at = find(buf, len, "b.weight");
    CHECK(at && open_patched(buf, len, at, "a", 1, "duplicate tensor"));
    /* tensor info fields of a.weight: name, n_dims, ne[2], type, offset */
    at = find(buf, len, "a.weight") + 8;
    uint32_t dims9 = 9;
    CHECK(open_patched(buf, len, at, &dims9, 4, "dimensions"));
    uint64_t ne_huge = 1ull << 62;
    CHECK(open_patched(buf, len, at + 4, &ne_huge, 8, "too large"));
    uint64_t ne_big = 1ull << 40;
    CHECK(open_patched(buf, len, at + 4 + 8, &ne_big, 8, "past the end"));
    uint32_t unk = 200, q4k = RQ_GGML_Q4_K;
    CHECK(open_patched(buf, len, at + 4 + 16, &unk, 4, "unknown ggml type"));
    CHECK(open_patched(buf, len, at + 4 + 16, &q4k, 4, "block size"));
    uint64_t off_odd = 3, off_far = 1ull << 50;
    CHECK(open_patched(buf, len, at + 4 + 20, &off_odd, 8, "alignment"));
    CHECK(open_patched(buf, len, at + 4 + 20, &off_far, 8, "past the end"));
    free(buf);
}

static void test_real_model(void) {
    char p[1024];
    const char *path = rq_test_model("smollm2-135m.gguf", p, sizeof p);
    if (!path) SKIP("smollm2-135m not cached (repliq pull smollm2-135m)");
    rq_gguf *g;
    REQUIRE(rq_gguf_open(path, &g) == 0);
    CHECK(g->version == 3 && g->n_tensors == 272 && g->n_kv == 33);
    int64_t v;
    CHECK(rq_gguf_get_int(g, "llama.block_count", &v) == 0 && v == 30);
    CHECK(rq_gguf_get_int(g, "llama.embedding_length", &v) == 0 && v == 576);
    uint64_t n;
    const rq_str *toks;
    CHECK(rq_gguf_get_strs(g, "tokenizer.ggml.tokens", &n, &toks) == 0 && n == 49152);
    CHECK(rq_gguf_get_strs(g, "tokenizer.ggml.merges", &n, &toks) == 0 && n == 48900);
    const rq_gguf_tensor *t = rq_gguf_tensor_find(g, "token_embd.weight");
    CHECK(t && t->type == RQ_GGML_Q8_0 && t->ne[0] == 576 && t->ne[1] == 49152);
    t = rq_gguf_tensor_find(g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == RQ_GGML_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576);
    rq_gguf_close(g);
}

int main(void) {
    RUN(test_round_trip);
    RUN(test_truncations);
    RUN(test_malformed);
    RUN(test_real_model);
    TEST_EXIT();
}
