/* tiny_model.h - writes a small random transformer as a GGUF file (any of the
 * supported architectures, GQA, optional QKV bias) for tests that need a model
 * but not a real one. */
#ifndef RQ_TINY_MODEL_H
#define RQ_TINY_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "ggml_types.h"
#include "gguf.h"
#include "util.h"

typedef struct {
    const char *arch;
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv;
    float rope_base;
    unsigned seed;
    int weight_type; /* RQ_GGML_F32 or RQ_GGML_F16 */
    int tied;        /* no output.weight: the output matrix is the token embedding */
} tiny_spec;

static float tiny_rand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((float)((*s >> 8) & 0xffff) / 65535.0f - 0.5f);
}

/* Writes the model to path; returns 0 on success. All buffers live until written. */
static int tiny_model_write(const tiny_spec *sp, const char *path) {
    rq_gguf_writer *w = rq_gguf_writer_new();
    char key[128];
    int E = sp->n_embd, F = sp->n_ff, hd = E / sp->n_head, Dkv = sp->n_head_kv * hd;
    int bias = strcmp(sp->arch, "qwen2") == 0;
    rq_gguf_set_str(w, "general.architecture", sp->arch);
    rq_gguf_set_str(w, "general.name", "tiny");
#define KEYU(suf, v)                                                                                               \
    snprintf(key, sizeof key, "%s." suf, sp->arch);                                                                \
    rq_gguf_set_u32(w, key, (uint32_t)(v));
    KEYU("block_count", sp->n_layer);
    KEYU("embedding_length", E);
    KEYU("feed_forward_length", F);
    KEYU("attention.head_count", sp->n_head);
    KEYU("attention.head_count_kv", sp->n_head_kv);
    KEYU("context_length", 256);
#undef KEYU
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", sp->arch);
    rq_gguf_set_f32(w, key, 1e-5f);
    snprintf(key, sizeof key, "%s.rope.freq_base", sp->arch);
    rq_gguf_set_f32(w, key, sp->rope_base);
    unsigned s = sp->seed;
    void *bufs[256];
    int nb = 0, rc = 0;
    /* name, ne0 (row length), ne1 */
    struct {
        char name[64];
        int ne0, ne1;
        float scale, offset;
    } t[64];
    int nt = 0;
#define ADD(nm, a, b, sc, off)                                                                                     \
    do {                                                                                                           \
        snprintf(t[nt].name, sizeof t[nt].name, "%s", nm);                                                        \
        t[nt].ne0 = a;                                                                                             \
        t[nt].ne1 = b;                                                                                             \
        t[nt].scale = sc;                                                                                          \
        t[nt].offset = off;                                                                                        \
        nt++;                                                                                                      \
    } while (0)
    ADD("token_embd.weight", E, sp->n_vocab, 2.0f, 0.0f);
    ADD("output_norm.weight", E, 1, 0.2f, 1.0f);
    if (!sp->tied) ADD("output.weight", E, sp->n_vocab, 1.0f, 0.0f);
    for (int l = 0; l < sp->n_layer && nt < 60; l++) {
        char nm[64];
#define L(suf, a, b, sc, off)                                                                                      \
    snprintf(nm, sizeof nm, "blk.%d." suf, l);                                                                     \
    ADD(nm, a, b, sc, off);
        L("attn_norm.weight", E, 1, 0.2f, 1.0f);
        L("ffn_norm.weight", E, 1, 0.2f, 1.0f);
        L("attn_q.weight", E, E, 0.6f, 0.0f);
        L("attn_k.weight", E, Dkv, 0.6f, 0.0f);
        L("attn_v.weight", E, Dkv, 0.6f, 0.0f);
        L("attn_output.weight", E, E, 0.4f, 0.0f);
        L("ffn_gate.weight", E, F, 0.5f, 0.0f);
        L("ffn_up.weight", E, F, 0.5f, 0.0f);
        L("ffn_down.weight", F, E, 0.4f, 0.0f);
        if (bias) {
            L("attn_q.bias", E, 1, 0.5f, 0.0f);
            L("attn_k.bias", Dkv, 1, 0.5f, 0.0f);
            L("attn_v.bias", Dkv, 1, 0.5f, 0.0f);
        }
#undef L
    }
#undef ADD
    for (int i = 0; i < nt && !rc; i++) {
        int64_t ne[2] = {t[i].ne0, t[i].ne1}, n = ne[0] * ne[1];
        int nd = t[i].ne1 == 1 ? 1 : 2;
        int type = nd == 1 ? RQ_GGML_F32 : sp->weight_type;
        float *f = malloc((size_t)n * sizeof(float));
        for (int64_t k = 0; k < n; k++) f[k] = t[i].offset + t[i].scale * tiny_rand(&s);
        void *data = f;
        size_t nbytes = (size_t)n * 4;
        if (type == RQ_GGML_F16) {
            uint16_t *h = malloc((size_t)n * 2);
            for (int64_t k = 0; k < n; k++) h[k] = rq_fp32_to_fp16(f[k]);
            free(f);
            data = h;
            nbytes = (size_t)n * 2;
        }
        bufs[nb++] = data;
        rc = rq_gguf_add_tensor(w, t[i].name, type, nd, ne, data, nbytes);
    }
    if (!rc) rc = rq_gguf_write(w, path);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    rq_gguf_writer_free(w);
    return rc;
}

/* Calibration windows of pseudo-random ids below vocab, written into tok[n * len]
 * (which the returned struct points to), as if from a file with an all-zero sha256. */
static inline rq_calib tiny_calib_windows(int32_t *tok, int n, int len, int vocab, unsigned seed) {
    for (int i = 0; i < n * len; i++) {
        seed = seed * 1103515245u + 12345u;
        tok[i] = (int32_t)((seed >> 8) % (unsigned)vocab);
    }
    rq_calib c = {0};
    c.tokens = tok;
    c.n = n;
    c.len = len;
    snprintf(c.sha256, sizeof c.sha256, "%064d", 0);
    return c;
}

#endif
