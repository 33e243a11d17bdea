/* test_hf.c - safetensors reading and the Hugging Face checkpoint view: writes tiny
 * Llama and Qwen2 checkpoints (F32/F16/BF16, one file and sharded), checks names,
 * shapes, types, values and the Q/K permutation, then damaged variants. */
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"
#include "hf.h"
#include "model.h"
#include "quantize.h"
#include "recipe.h"
#include "rq_test.h"
#include "safetensors.h"
#include "util.h"

static char tmpdir[512];

/* ---- writing safetensors ------------------------------------------------------ */

typedef struct {
    char hdr[1 << 16];
    size_t hlen;
    uint8_t *data;
    size_t dlen;
} st_builder;

/* Exactly representable in F32, F16 and BF16: multiples of 1/8 with |v| <= 12.5. */
static float val(const char *name, int64_t i) {
    uint32_t h = 0;
    for (const char *p = name; *p; p++)
        h = h * 31 + (uint8_t)*p;
    return (float)((int64_t)((h + (uint64_t)i * 11) % 201) - 100) / 8.0f;
}

static size_t dtype_size(const char *dtype) { return strcmp(dtype, "F32") == 0 ? 4 : strcmp(dtype, "I8") == 0 ? 1 : 2; }

static void stb_add(st_builder *b, const char *name, const char *dtype, int64_t rows, int64_t cols) {
    int64_t n = rows * (cols ? cols : 1);
    size_t es = dtype_size(dtype), off = b->dlen;
    b->data = rq_realloc(b->data, b->dlen + (size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        float v = val(name, i);
        uint8_t *p = b->data + b->dlen + (size_t)i * es;
        if (es == 4)
            memcpy(p, &v, 4);
        else if (es == 1)
            *p = (uint8_t)(int8_t)v;
        else {
            uint16_t h = strcmp(dtype, "F16") == 0 ? rq_fp32_to_fp16(v) : rq_fp32_to_bf16(v);
            memcpy(p, &h, 2);
        }
    }
    b->dlen += (size_t)n * es;
    char shape[64];
    if (cols)
        snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)rows, (long long)cols);
    else
        snprintf(shape, sizeof shape, "[%lld]", (long long)rows);
    b->hlen += (size_t)snprintf(b->hdr + b->hlen, sizeof b->hdr - b->hlen,
                                "%s\"%s\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}",
                                b->hlen ? ", " : "{\"__metadata__\": {\"format\": \"pt\"}, ", name, dtype, shape, off,
                                b->dlen);
}

/* Header padded with spaces to a multiple of 8, as the reference writer does. */
static uint8_t *stb_bytes(st_builder *b, size_t *size) {
    char hdr[sizeof b->hdr + 16];
    size_t n = (size_t)snprintf(hdr, sizeof hdr, "%s}", b->hlen ? b->hdr : "{");
    while (n % 8)
        hdr[n++] = ' ';
    *size = 8 + n + b->dlen;
    uint8_t *buf = rq_malloc(*size);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    if (b->dlen) memcpy(buf + 8 + n, b->data, b->dlen);
    return buf;
}

static void write_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        printf("  cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void stb_write(st_builder *b, const char *dir, const char *name) {
    size_t n;
    uint8_t *buf = stb_bytes(b, &n);
    write_file(dir, name, buf, n);
    free(buf);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- tiny models -------------------------------------------------------------- */

/* E 12, 2 heads of 6, 1 KV head, F 20, 2 layers, vocab 16. */
enum { E = 12, NH = 2, NKV = 1, HD = 6, F = 20, NL = 2, V = 16 };

typedef struct {
    const char *hf, *gguf;
    int64_t rows, cols;
    int permute_heads; /* expected: rows reordered per head (Llama Q/K) */
} tdesc;

static int model_tensors(bool qwen, bool tied, tdesc *t) {
    static char names[64][2][80];
    int n = 0;
#define T(h, g, r, c, p)                                                                                               \
    do {                                                                                                               \
        snprintf(names[n][0], 80, "%s", h);                                                                            \
        snprintf(names[n][1], 80, "%s", g);                                                                            \
        t[n] = (tdesc){names[n][0], names[n][1], r, c, p};                                                             \
        n++;                                                                                                           \
    } while (0)
    T("model.embed_tokens.weight", "token_embd.weight", V, E, 0);
    T("model.norm.weight", "output_norm.weight", E, 0, 0);
    if (!tied) T("lm_head.weight", "output.weight", V, E, 0);
    for (int l = 0; l < NL; l++) {
        char h[80], g[80];
#define L(hs, gs, r, c, p)                                                                                             \
    do {                                                                                                               \
        snprintf(h, sizeof h, "model.layers.%d.%s", l, hs);                                                            \
        snprintf(g, sizeof g, "blk.%d.%s", l, gs);                                                                     \
        T(h, g, r, c, p);                                                                                              \
    } while (0)
        L("input_layernorm.weight", "attn_norm.weight", E, 0, 0);
        L("self_attn.q_proj.weight", "attn_q.weight", NH * HD, E, qwen ? 0 : NH);
        L("self_attn.k_proj.weight", "attn_k.weight", NKV * HD, E, qwen ? 0 : NKV);
        L("self_attn.v_proj.weight", "attn_v.weight", NKV * HD, E, 0);
        if (qwen) {
            L("self_attn.q_proj.bias", "attn_q.bias", NH * HD, 0, 0);
            L("self_attn.k_proj.bias", "attn_k.bias", NKV * HD, 0, 0);
            L("self_attn.v_proj.bias", "attn_v.bias", NKV * HD, 0, 0);
        }
        L("self_attn.o_proj.weight", "attn_output.weight", E, NH * HD, 0);
        L("post_attention_layernorm.weight", "ffn_norm.weight", E, 0, 0);
        L("mlp.gate_proj.weight", "ffn_gate.weight", F, E, 0);
        L("mlp.up_proj.weight", "ffn_up.weight", F, E, 0);
        L("mlp.down_proj.weight", "ffn_down.weight", E, F, 0);
#undef L
    }
#undef T
    return n;
}

static const char *const DTYPES[3] = {"F32", "F16", "BF16"};

static void write_config(const char *dir, bool qwen, bool tied, const char *drop, const char *extra) {
    char buf[2048];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"architectures\": [\"%s\"], \"model_type\": \"%s\"",
                                qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", qwen ? "qwen2" : "llama");
    const struct {
        const char *k, *v;
    } kv[] = {{"hidden_size", "12"},
              {"intermediate_size", "20"},
              {"num_hidden_layers", "2"},
              {"num_attention_heads", "2"},
              {"num_key_value_heads", "1"},
              {"vocab_size", "16"},
              {"rms_norm_eps", "1e-06"},
              {"rope_theta", qwen ? "1000000.0" : "10000.0"},
              {"max_position_embeddings", "64"},
              {"tie_word_embeddings", tied ? "true" : "false"},
              {"torch_dtype", "\"bfloat16\""}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (!drop || strcmp(drop, kv[i].k) != 0)
            n += (size_t)snprintf(buf + n, sizeof buf - n, ", \"%s\": %s", kv[i].k, kv[i].v);
    snprintf(buf + n, sizeof buf - n, "%s%s}\n", extra ? ", " : "", extra ? extra : "");
    write_file(dir, "config.json", buf, strlen(buf));
}

/* A checkpoint in a fresh folder: tensors cycle through F32/F16/BF16; sharded puts
 * the odd ones in a second file and writes the index. */
static void make_model(const char *dir, bool qwen, bool tied, bool sharded) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) exit(1);
    write_config(dir, qwen, tied, NULL, NULL);
    tdesc t[64];
    int n = model_tensors(qwen, tied, t);
    static st_builder b[2];
    char index[8192];
    size_t ni = (size_t)snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        int s = sharded ? i % 2 : 0;
        stb_add(&b[s], t[i].hf, DTYPES[i % 3], t[i].rows, t[i].cols);
        ni += (size_t)snprintf(index + ni, sizeof index - ni, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                               i ? ", " : "", t[i].hf, s + 1);
    }
    snprintf(index + ni, sizeof index - ni, "}}\n");
    if (sharded) {
        stb_write(&b[0], dir, "model-00001-of-00002.safetensors");
        stb_write(&b[1], dir, "model-00002-of-00002.safetensors");
        write_file(dir, "model.safetensors.index.json", index, strlen(index));
    } else
        stb_write(&b[0], dir, "model.safetensors");
}

static float elem(const rq_gguf_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    if (t->type == RQ_GGML_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->type == RQ_GGML_F16 ? rq_fp16_to_fp32(h) : rq_bf16_to_fp32(h);
}

/* Row r of a GGUF Q/K matrix is row src_row(r) of the HF one: llama.cpp's
 * LlamaModel.permute, i.e. reshape(heads, 2, hd/2, cols).swapaxes(1, 2). */
static int64_t src_row(int64_t r, int64_t rows, int heads) {
    if (!heads) return r;
    int64_t hd = rows / heads, h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static void check_model(const char *dir, bool qwen, bool tied) {
    rq_gguf *g = NULL;
    int rc = rq_hf_open(dir, &g);
    CHECKF(rc == 0, "%s", rq_error());
    if (rc) return;
    rq_str s;
    int64_t i64;
    double f;
    const char *a = qwen ? "qwen2" : "llama";
    char key[128];
    CHECK(rq_gguf_get_str(g, "general.architecture", &s) == 0 && rq_str_eq(s, a));
    const struct {
        const char *k;
        int64_t v;
    } ints[] = {{"block_count", NL},
                {"embedding_length", E},
                {"feed_forward_length", F},
                {"attention.head_count", NH},
                {"attention.head_count_kv", NKV},
                {"context_length", 64},
                {"rope.dimension_count", HD},
                {"vocab_size", V}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", a, ints[i].k);
        CHECKF(rq_gguf_get_int(g, key, &i64) == 0 && i64 == ints[i].v, "%s", key);
    }
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    CHECK(rq_gguf_get_float(g, key, &f) == 0 && f == (qwen ? 1e6 : 1e4));
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    CHECK(rq_gguf_get_float(g, key, &f) == 0 && f == (double)1e-6f);
    CHECK(rq_gguf_find(g, "tokenizer.ggml.model") == NULL);

    tdesc t[64];
    int n = model_tensors(qwen, tied, t);
    CHECKF(g->n_tensors == (uint64_t)n, "%llu tensors, expected %d", (unsigned long long)g->n_tensors, n);
    CHECK((rq_gguf_tensor_find(g, "output.weight") == NULL) == tied);
    for (int i = 0; i < n; i++) {
        const rq_gguf_tensor *o = rq_gguf_tensor_find(g, t[i].gguf);
        CHECKF(o != NULL, "tensor %s missing", t[i].gguf);
        if (!o) continue;
        int want_type = (const int[]){RQ_GGML_F32, RQ_GGML_F16, RQ_GGML_BF16}[i % 3];
        int64_t ne0 = t[i].cols ? t[i].cols : t[i].rows, ne1 = t[i].cols ? t[i].rows : 1;
        CHECKF(o->type == want_type && o->n_dims == (t[i].cols ? 2 : 1) && o->ne[0] == ne0 && o->ne[1] == ne1 &&
                   o->ne[2] == 1 && o->ne[3] == 1,
               "%s: type %d dims %d ne [%lld, %lld]", t[i].gguf, o->type, o->n_dims, (long long)o->ne[0],
               (long long)o->ne[1]);
        CHECK(o->nbytes == (size_t)(ne0 * ne1) * (want_type == RQ_GGML_F32 ? 4 : 2));
        int bad = 0;
        for (int64_t r = 0; r < ne1; r++)
            for (int64_t c = 0; c < ne0; c++)
                bad += elem(o, r * ne0 + c) != val(t[i].hf, src_row(r, ne1, t[i].permute_heads) * ne0 + c);
        CHECKF(bad == 0, "%s: %d values differ", t[i].gguf, bad);
    }
    /* the loader's reading of the view */
    rq_config cfg;
    rc = rq_config_from_gguf(g, &cfg);
    CHECKF(rc == 0, "%s", rq_error());
    if (!rc)
        CHECK(cfg.n_layer == NL && cfg.n_embd == E && cfg.n_head == NH && cfg.n_head_kv == NKV && cfg.head_dim == HD &&
              cfg.n_ff == F && cfg.n_vocab == V && cfg.tied_output == tied);
    rq_gguf_close(g);
}

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static void test_hf_llama_single_file(void) {
    char d[600];
    path_in(d, sizeof d, "llama");
    make_model(d, false, false, false);
    check_model(d, false, false);
}

/* A Hugging Face folder quantizes like a GGUF: block linears packed, the rest
 * (F32/F16/BF16 as the view holds them) copied, and the result loads. */
static void test_hf_quantize(void) {
    char d[600], out[700];
    path_in(d, sizeof d, "llama-q");
    make_model(d, false, false, true);
    snprintf(out, sizeof out, "%s/q.gguf", tmpdir);
    rq_recipe r;
    rq_recipe_default(&r);
    r.base.method = RQ_METHOD_RTN;
    r.base.grid.bits = 3;
    rq_quant_job job = {.model = d, .out_path = out};
    rq_quant_report rep;
    REQUIRE(rq_quantize_model(&job, &r, &rep) == 0);
    CHECK(rep.linear.weights > 0 && rep.linear.bits < 16 * rep.linear.weights); /* tiny rows: headers dominate */
    rq_model *a = NULL, *b = NULL;
    REQUIRE(rq_model_load(d, &a) == 0);
    REQUIRE(rq_model_load(out, &b) == 0);
    CHECK(memcmp(a->out_norm, b->out_norm, sizeof(float) * a->cfg.n_embd) == 0);
    CHECK(memcmp(a->tok_embd, b->tok_embd, sizeof(float) * a->cfg.n_embd * a->cfg.n_vocab) == 0);
    double diff = 0, size = 0;
    for (int64_t i = 0; i < a->layers[0].q.rows * a->layers[0].q.cols; i++) {
        diff = fmax(diff, fabs(a->layers[0].q.w[i] - b->layers[0].q.w[i]));
        size = fmax(size, fabs(a->layers[0].q.w[i]));
    }
    CHECKF(diff > 0 && diff < 0.2 * size, "3-bit attn_q: largest change %g of %g", diff, size);
    rq_model_free(a);
    rq_model_free(b);
    rq_recipe_free(&r);
}

static void test_hf_qwen2_sharded_tied(void) {
    char d[600];
    path_in(d, sizeof d, "qwen2");
    make_model(d, true, true, true);
    check_model(d, true, true);
}

static void test_hf_llama_sharded_tied(void) {
    char d[600];
    path_in(d, sizeof d, "llama_sharded");
    make_model(d, false, true, true);
    check_model(d, false, true);
}

/* The permutation on a known matrix, spelled out: 2 heads of 6 rows. */
static void test_hf_permutation_literal(void) {
    char d[600];
    path_in(d, sizeof d, "llama");
    make_model(d, false, false, false);
    rq_gguf *g = NULL;
    REQUIRE(rq_hf_open(d, &g) == 0);
    const int64_t q_order[12] = {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}, k_order[6] = {0, 3, 1, 4, 2, 5};
    const rq_gguf_tensor *q = rq_gguf_tensor_find(g, "blk.1.attn_q.weight"),
                         *k = rq_gguf_tensor_find(g, "blk.1.attn_k.weight");
    REQUIRE(q && k);
    for (int r = 0; r < 12; r++)
        CHECK(elem(q, r * E + 5) == val("model.layers.1.self_attn.q_proj.weight", q_order[r] * E + 5));
    for (int r = 0; r < 6; r++)
        CHECK(elem(k, r * E) == val("model.layers.1.self_attn.k_proj.weight", k_order[r] * E));
    rq_gguf_close(g);
}

/* ---- damaged input ------------------------------------------------------------ */

static int st_mem(const char *hdr, size_t data_len) {
    size_t hl = strlen(hdr), n = 8 + hl + data_len;
    uint8_t *buf = rq_calloc(1, n);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    rq_st_file *f = NULL;
    int rc = rq_st_open_mem(buf, n, "mem.safetensors", &f);
    rq_st_close(f);
    free(buf);
    return rc;
}

#define REFUSED(expr, needle)                                                                                          \
    do {                                                                                                               \
        int rc_ = (expr);                                                                                              \
        CHECKF(rc_ != 0 && strstr(rq_error(), needle), "expected a refusal mentioning '%s', got rc %d: %s", needle,    \
               rc_, rc_ ? rq_error() : "");                                                                            \
        if (rc_) printf("  refused: %s\n", rq_error());                                                                \
    } while (0)

static void test_st_valid_minimal(void) {
    CHECKF(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16) == 0, "%s",
           rq_error());
    CHECKF(st_mem("{}", 0) == 0, "%s", rq_error());
    CHECKF(st_mem("{\"s\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 2]}}  ", 2) == 0, "%s",
           rq_error());
}

static void test_st_refuses_damage(void) {
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    rq_st_file *f = NULL;
    REFUSED(rq_st_open_mem(tiny, sizeof tiny, "tiny.safetensors", &f), "too short");
    /* header length past the end */
    uint8_t hdr[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    REFUSED(rq_st_open_mem(hdr, sizeof hdr, "long.safetensors", &f), "header length");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 12),
            "outside the data");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [8, 4]}}", 16),
            "outside the data");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16), "need 16");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                   "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                   16),
            "overlap");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F7\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "unknown dtype 'F7'");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8), "shape[0]");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8), "shape[0]");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8), "data_offsets");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
                   "\"data_offsets\": [0, 8]}}",
                   8),
            "overflows");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                   "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                   16),
            "listed twice");
    REFUSED(st_mem("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}", 8), "does not parse");
    REFUSED(st_mem("{\"a\": 3}", 0), "not a JSON object");
}

/* Every truncation and every single-byte corruption of the header of a valid file is
 * either refused or read within bounds (run under ASan: the buffer is exact). */
static void test_st_truncations_and_flips(void) {
    st_builder *b = rq_calloc(1, sizeof *b);
    stb_add(b, "x", "F32", 3, 2);
    stb_add(b, "y", "BF16", 5, 0);
    size_t n;
    uint8_t *full = stb_bytes(b, &n);
    free(b->data);
    free(b);
    int ok = 0;
    for (size_t len = 0; len <= n; len++) {
        uint8_t *p = rq_malloc(len ? len : 1);
        memcpy(p, full, len);
        rq_st_file *f = NULL;
        if (rq_st_open_mem(p, len, "trunc", &f) == 0) {
            ok++;
            for (size_t i = 0; i < f->n_tensors; i++) {
                const rq_st_tensor *t = &f->tensors[i];
                CHECK((const uint8_t *)t->data >= p && (const uint8_t *)t->data + t->nbytes <= p + len);
            }
        }
        rq_st_close(f);
        free(p);
    }
    CHECKF(ok == 1, "%d truncations accepted, expected only the whole file", ok);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | full[i];
    for (size_t at = 0; at < 8 + hl; at++)
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *p = rq_malloc(n);
            memcpy(p, full, n);
            p[at] ^= (uint8_t)(1u << bit);
            rq_st_file *f = NULL;
            if (rq_st_open_mem(p, n, "flip", &f) == 0)
                for (size_t i = 0; i < f->n_tensors; i++) {
                    const rq_st_tensor *t = &f->tensors[i];
                    CHECK((const uint8_t *)t->data >= p && (const uint8_t *)t->data + t->nbytes <= p + n);
                }
            rq_st_close(f);
            free(p);
        }
    free(full);
}

static void test_hf_refuses_damage(void) {
    char d[600], path[700];
    path_in(d, sizeof d, "bad");
    /* missing config key */
    make_model(d, false, false, false);
    write_config(d, false, false, "hidden_size", NULL);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "config.json: key 'hidden_size' is missing");
    write_config(d, false, false, "num_attention_heads", NULL);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "'num_attention_heads' is missing");
    write_config(d, false, false, NULL, "\"quantization_config\": {\"quant_method\": \"awq\"}");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "quantized (quant_method awq)");
    write_config(d, false, false, "num_key_value_heads", "\"num_key_value_heads\": 0");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "'num_key_value_heads' must be a positive integer");
    /* absurd sizes fail on the first missing tensor instead of allocating for them */
    write_config(d, false, false, "num_hidden_layers", "\"num_hidden_layers\": 1000000000");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "'model.layers.2.input_layernorm.weight' is missing");
    write_config(d, false, false, NULL, NULL);
    write_file(d, "config.json", "{\"model_type\": \"gpt2\"}", 22);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "model_type 'gpt2' is not supported");
    write_file(d, "config.json", "{\"model_type\": ", 15);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "not a JSON object");
    /* config and weights disagree: 2 KV heads would make k_proj [12, 12] */
    write_config(d, false, false, "num_key_value_heads", "\"num_key_value_heads\": 2");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "has shape [6, 12], config.json implies [12, 12]");
    /* truncated weights file */
    write_config(d, false, false, NULL, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    struct stat st;
    CHECK(stat(path, &st) == 0 && truncate(path, st.st_size - 10) == 0);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "outside the data section");
    CHECK(truncate(path, 100) == 0);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "runs past the end of the file");
    CHECK(truncate(path, 4) == 0);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "too short");
    CHECK(unlink(path) == 0);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "neither model.safetensors nor");

    /* a missing tensor, and an unsupported dtype, in a hand-made file */
    st_builder *b = rq_calloc(1, sizeof *b);
    tdesc t[64];
    int n = model_tensors(false, false, t);
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].hf, "model.layers.1.mlp.up_proj.weight") != 0)
            stb_add(b, t[i].hf, strcmp(t[i].hf, "model.layers.0.mlp.gate_proj.weight") ? "F32" : "I8", t[i].rows,
                    t[i].cols);
    stb_write(b, d, "model.safetensors");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "'model.layers.0.mlp.gate_proj.weight' has dtype I8");
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].hf, "model.layers.1.mlp.up_proj.weight") != 0) stb_add(b, t[i].hf, "F32", t[i].rows, t[i].cols);
    stb_write(b, d, "model.safetensors");
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "tensor 'model.layers.1.mlp.up_proj.weight' is missing");
    free(b);

    /* a sharded checkpoint whose index names a missing shard, or a path outside the folder */
    make_model(d, true, true, true);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", d);
    CHECK(unlink(path) == 0);
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "model-00002-of-00002.safetensors");
    const char *idx = "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}";
    write_file(d, "model.safetensors.index.json", idx, strlen(idx));
    REFUSED(rq_hf_open(d, &(rq_gguf *){0}), "must name a file in the same folder");
    REFUSED(rq_hf_open("/nonexistent/repliq/hf", &(rq_gguf *){0}), "no config.json");
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/rq_test_hf.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL test_hf: cannot create a temporary folder under %s\n", base && *base ? base : "/tmp");
        return 1;
    }
    RUN(test_hf_quantize);
    RUN(test_st_valid_minimal);
    RUN(test_st_refuses_damage);
    RUN(test_st_truncations_and_flips);
    RUN(test_hf_llama_single_file);
    RUN(test_hf_qwen2_sharded_tied);
    RUN(test_hf_llama_sharded_tied);
    RUN(test_hf_permutation_literal);
    RUN(test_hf_refuses_damage);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}
