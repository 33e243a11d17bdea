/* test_forward.c - the batched forward pass against the scalar reference on tiny
 * random models of each architecture, and against llama.cpp's logits on the real
 * SmolLM2 (golden file), and the perplexity protocols' bookkeeping. */
#include <math.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "ppl.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "util.h"

static rq_model *tiny(const char *arch, int weight_type, unsigned seed) {
    tiny_spec sp = {arch, 97, 32, 48, 2, 4, 2, 10000.0f, seed, weight_type, 0};
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_tiny_%d.gguf", (int)getpid());
    if (tiny_model_write(&sp, path)) return NULL;
    rq_model *m = NULL;
    if (rq_model_load(path, &m)) printf("  load: %s\n", rq_error());
    unlink(path);
    return m;
}

/* max |a-b| / max|b| over n values */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

static void check_batched_vs_ref(const char *arch, int wtype) {
    rq_model *m = tiny(arch, wtype, 7);
    REQUIRE(m != NULL);
    CHECK(m->cfg.arch->rope_neox == !strcmp(arch, "qwen2"));
    CHECK((m->layers[0].q.b != NULL) == !strcmp(arch, "qwen2"));
    enum { T = 150 }; /* crosses an attention block boundary (128) */
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 31 + 5) % m->cfg.n_vocab;
    float *ref = malloc((size_t)T * m->cfg.n_vocab * sizeof(float));
    float *got = malloc((size_t)T * m->cfg.n_vocab * sizeof(float));
    REQUIRE(rq_forward_ref(m, tok, T, ref) == 0);
    rq_fwd *f = rq_fwd_new(m, 160);
    rq_fwd_logits(m, rq_fwd_hidden(f, tok, T), T, got);
    double e = rel_err(got, ref, (size_t)T * m->cfg.n_vocab);
    CHECKF(e < 1e-5, "%s: batched vs reference relative error %.3g", arch, e);
    /* a prefix gives the same logits (causality) */
    rq_fwd_logits(m, rq_fwd_hidden(f, tok, 5), 5, got);
    e = rel_err(got, ref, (size_t)5 * m->cfg.n_vocab);
    CHECKF(e < 1e-5, "%s: prefix relative error %.3g", arch, e);
    rq_fwd_free(f);
    free(ref);
    free(got);
    rq_model_free(m);
}

static void test_llama_batched_vs_ref(void) { check_batched_vs_ref("llama", RQ_GGML_F32); }
static void test_qwen2_batched_vs_ref(void) { check_batched_vs_ref("qwen2", RQ_GGML_F32); }
static void test_f16_weights_batched_vs_ref(void) { check_batched_vs_ref("llama", RQ_GGML_F16); }

/* The RoPE style is part of the adapter: flipping it must change the output, or
 * the tests above could not tell the styles apart. */
static void test_rope_style_matters(void) {
    rq_model *m = tiny("llama", RQ_GGML_F32, 3);
    REQUIRE(m != NULL);
    int32_t tok[6] = {1, 2, 3, 4, 5, 6};
    size_t nv = (size_t)m->cfg.n_vocab;
    float *a = malloc(6 * nv * sizeof(float)), *b = malloc(6 * nv * sizeof(float));
    rq_forward_ref(m, tok, 6, a);
    rq_arch flipped = *m->cfg.arch;
    flipped.rope_neox = !flipped.rope_neox;
    m->cfg.arch = &flipped;
    rq_forward_ref(m, tok, 6, b);
    CHECK(rel_err(a, b, nv) < 1e-6);     /* position 0 is not rotated */
    CHECK(rel_err(a, b, 6 * nv) > 1e-3); /* later positions are */
    free(a);
    free(b);
    rq_model_free(m);
}

static void test_unsupported_arch(void) {
    tiny_spec sp = {"gemma3", 64, 32, 48, 1, 4, 2, 10000.0f, 1, RQ_GGML_F32, 0};
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_tiny_g_%d.gguf", (int)getpid());
    REQUIRE(tiny_model_write(&sp, path) == 0);
    rq_model *m = NULL;
    CHECK(rq_model_load(path, &m) != 0);
    CHECKF(strstr(rq_error(), "architecture not supported: gemma3") != NULL, "%s", rq_error());
    unlink(path);
}

/* Protocol bookkeeping on a synthetic token stream: counts and BOS handling. */
static void test_ppl_protocol_counts(void) {
    rq_model *m = tiny("llama", RQ_GGML_F32, 11);
    REQUIRE(m != NULL);
    enum { N = 200 };
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (i * 7 + 3) % m->cfg.n_vocab;
    rq_ppl_params p = {.protocol = RQ_PPL_LLAMACPP, .n_ctx = 64};
    rq_ppl_result r;
    REQUIRE(rq_ppl_eval_tokens(m, &p, tok, N, &r) == 0);
    CHECK(r.n_chunks == 3 && r.n_scored == 3 * (64 - 1 - 32));
    /* the first scored target of chunk 0 is tok[33], predicted from position 32 */
    float *lg = malloc((size_t)64 * m->cfg.n_vocab * sizeof(float));
    rq_forward_ref(m, tok, 64, lg);
    double nll = rq_nll_of(lg + (size_t)32 * m->cfg.n_vocab, m->cfg.n_vocab, tok[33]);
    CHECKF(fabs(nll - r.nll[0]) < 1e-4, "nll %.6f vs %.6f", nll, (double)r.nll[0]);
    double mean = 0;
    for (int64_t i = 0; i < r.n_scored; i++)
        mean += r.nll[i];
    mean /= (double)r.n_scored;
    CHECK(fabs(exp(mean) - r.ppl) < 1e-6 * r.ppl);
    free(r.nll);
    /* with BOS the chunk's first input changes, so the scores change */
    p.add_bos = true;
    p.bos_id = 1;
    rq_ppl_result rb;
    REQUIRE(rq_ppl_eval_tokens(m, &p, tok, N, &rb) == 0);
    CHECK(rb.n_scored == r.n_scored && rb.ppl != r.ppl);
    free(rb.nll);
    /* gptq: every token after the first of each window */
    rq_ppl_params g = {.protocol = RQ_PPL_GPTQ, .n_ctx = 64, .max_chunks = 2};
    REQUIRE(rq_ppl_eval_tokens(m, &g, tok, N, &r) == 0);
    CHECK(r.n_chunks == 2 && r.n_scored == 2 * 63);
    nll = rq_nll_of(lg, m->cfg.n_vocab, tok[1]);
    CHECKF(fabs(nll - r.nll[0]) < 1e-4, "gptq first nll %.6f vs %.6f", nll, (double)r.nll[0]);
    free(r.nll);
    /* fewer than two windows is refused */
    CHECK(rq_ppl_eval_tokens(m, &p, tok, 100, &r) != 0 && strstr(rq_error(), "fewer than two windows"));
    free(lg);
    rq_model_free(m);
}

static void test_gptq_text(void) {
    const char *raw = " \n = Title = \n \n Some text .\n\n";
    size_t n;
    char *t = rq_ppl_gptq_text(raw, strlen(raw), &n);
    /* lines: " \n" -> "", " = Title = \n", " \n" -> "", " Some text .\n", "\n" -> "" */
    const char *want = "\n\n = Title = \n\n\n\n\n Some text .\n\n\n";
    CHECKF(strcmp(t, want) == 0 && n == strlen(want), "got '%s'", t);
    free(t);
}

/* keep_massive: a threshold no token reaches is plain A4, one every token passes
 * is A16 (f16), and a planted massive token alone kept gives something between. */
static void test_keep_massive(void) {
    rq_model *m = tiny("llama", RQ_GGML_F32, 9);
    REQUIRE(m != NULL);
    int E = m->cfg.n_embd;
    for (int i = 0; i < E; i++)
        m->tok_embd[(size_t)3 * E + i] *= 200.0f; /* token 3's residual RMS dwarfs the others' */
    enum { N = 12 };
    int32_t tok[N] = {5, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    size_t nl = (size_t)N * m->cfg.n_vocab;
    float *lg[4];
    const float keep[4] = {0.0f, 1e30f, 1e-30f, 20.0f};
    for (int k = 0; k < 4; k++) {
        m->actq = (rq_actq){.a_bits = k == 2 ? 16 : 4, .a_clip = 1.0f, .keep_massive = k == 2 ? 0.0f : keep[k]};
        if (k == 2) m->actq.keep_massive = 0.0f;
        lg[k] = malloc(nl * sizeof(float));
        rq_fwd *f = rq_fwd_new(m, N);
        rq_fwd_logits(m, rq_fwd_hidden(f, tok, N), N, lg[k]);
        rq_fwd_free(f);
    }
    float *a16 = lg[2];
    m->actq = (rq_actq){.a_bits = 4, .a_clip = 1.0f, .keep_massive = 1e-30f}; /* every token kept: the same as A16 */
    float *all = malloc(nl * sizeof(float));
    rq_fwd *f = rq_fwd_new(m, N);
    rq_fwd_logits(m, rq_fwd_hidden(f, tok, N), N, all);
    rq_fwd_free(f);
    CHECK(memcmp(lg[0], lg[1], nl * sizeof(float)) == 0); /* nobody flagged: plain A4 */
    CHECK(memcmp(all, a16, nl * sizeof(float)) == 0);
    double d4 = rel_err(lg[3], lg[0], nl), d16 = rel_err(lg[3], a16, nl);
    printf("  massive token kept: differs from A4 by %.3g, from A16 by %.3g\n", d4, d16);
    CHECK(d4 > 1e-4 && d16 > 1e-4);
    for (int k = 0; k < 4; k++)
        free(lg[k]);
    free(all);
    rq_model_free(m);
}

static float *logits_with(rq_model *m, const rq_actq *a, const int32_t *tok, int n) {
    m->actq = *a;
    float *lg = malloc((size_t)n * m->cfg.n_vocab * sizeof(float));
    rq_fwd *f = rq_fwd_new(m, n);
    rq_fwd_logits(m, rq_fwd_hidden(f, tok, n), n, lg);
    rq_fwd_free(f);
    return lg;
}

/* kv_unbias: a model without a K bias is unchanged bit for bit; on a qwen2 model
 * whose K bias is raised to 300 on one channel per head (Qwen2.5-1.5B's reaches 354
 * where the rest of its keys stay under 10), plain 4-bit keys spend their range on
 * the bias and the logits drift far; keys quantized without it drift much less. */
static void test_kv_unbias(void) {
    enum { N = 40 };
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (i * 37 + 11) % 97;
    rq_actq plain = {.a_clip = 1.0f, .kv_bits = 4}, unb = plain, off = {.a_clip = 1.0f};
    unb.kv_unbias = true;
    rq_model *m = tiny("llama", RQ_GGML_F32, 4);
    REQUIRE(m != NULL);
    size_t nl = (size_t)N * m->cfg.n_vocab;
    float *a = logits_with(m, &plain, tok, N), *b = logits_with(m, &unb, tok, N);
    CHECK(memcmp(a, b, nl * sizeof(float)) == 0);
    free(a);
    free(b);
    rq_model_free(m);

    m = tiny("qwen2", RQ_GGML_F32, 4);
    REQUIRE(m != NULL && m->layers[0].k.b != NULL);
    int hd = m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int h = 0; h < m->cfg.n_head_kv; h++)
            m->layers[l].k.b[h * hd + hd - 1] = 300.0f;
    float *ref = logits_with(m, &off, tok, N);
    a = logits_with(m, &plain, tok, N);
    b = logits_with(m, &unb, tok, N);
    double ep = rel_err(a, ref, nl), eu = rel_err(b, ref, nl);
    printf("  K bias 300: 4-bit keys drift %.3g, without their bias %.3g\n", ep, eu);
    CHECK(eu > 0 && eu * 5 < ep);
    free(ref);
    free(a);
    free(b);
    rq_model_free(m);
}

/* The K bias's image the cache adds back (the kv hook's kb) is exactly what the
 * bias contributes to the keys after RoPE and R3: layer 0 run with the bias and
 * with it zeroed differ by kb, with no R3 and with each kind of R3, the bias on
 * every channel (high-frequency ones rotate fast, so a wrong RoPE shows). */
typedef struct {
    float *k, *kb;
    size_t D;
    int calls;
} kv_grab;

static void grab_kv(void *ctx, int layer, const float *k, const float *kb, int n) {
    kv_grab *g = ctx;
    if (layer != 0) return;
    memcpy(g->k, k, (size_t)n * g->D * sizeof(float));
    if (kb) memcpy(g->kb, kb, (size_t)n * g->D * sizeof(float));
    g->calls++;
}

static void test_kv_bias_image(void) {
    enum { N = 24 };
    rq_model *m = tiny("qwen2", RQ_GGML_F32, 6);
    REQUIRE(m != NULL && m->layers[0].k.b != NULL);
    size_t D = (size_t)m->cfg.n_head_kv * m->cfg.head_dim;
    int32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (i * 29 + 3) % 97;
    float *bias = m->layers[0].k.b, *saved = malloc(D * sizeof(float));
    for (size_t i = 0; i < D; i++)
        bias[i] = 50.0f * (float)((i * 7) % 5) - 90.0f;
    memcpy(saved, bias, D * sizeof(float));
    const int kinds[3] = {RQ_ROT_NONE, RQ_ORTH_RH, RQ_ORTH_RO};
    for (int r = 0; r < 3; r++) {
        kv_grab with = {malloc(N * D * sizeof(float)), malloc(N * D * sizeof(float)), D, 0};
        kv_grab without = {malloc(N * D * sizeof(float)), malloc(N * D * sizeof(float)), D, 0};
        rq_online_rot on = {.r3 = kinds[r], .r4 = RQ_ROT_NONE, .seed = 5};
        for (int pass = 0; pass < 2; pass++) {
            if (pass) memset(bias, 0, D * sizeof(float));
            rq_fwd *f = rq_fwd_new(m, N);
            REQUIRE(f && rq_fwd_set_online(f, &on) == 0);
            rq_fwd_set_kv_hook(f, grab_kv, pass ? &without : &with);
            rq_fwd_hidden(f, tok, N);
            rq_fwd_free(f);
        }
        memcpy(bias, saved, D * sizeof(float));
        double err = 0, big = 0;
        for (size_t i = 0; i < N * D; i++) {
            err = fmax(err, fabs((double)with.k[i] - without.k[i] - with.kb[i]));
            big = fmax(big, fabs((double)with.kb[i]));
        }
        printf("  R3 %d: max |k(b) - k(0) - kb| = %.3g (kb up to %.3g)\n", kinds[r], err, big);
        CHECK(with.calls == 1 && without.calls == 1 && big > 50 && err < 1e-4);
        free(with.k);
        free(with.kb);
        free(without.k);
        free(without.kb);
    }
    free(saved);
    rq_model_free(m);
}

int main(void) {
    RUN(test_llama_batched_vs_ref);
    RUN(test_qwen2_batched_vs_ref);
    RUN(test_f16_weights_batched_vs_ref);
    RUN(test_rope_style_matters);
    RUN(test_unsupported_arch);
    RUN(test_ppl_protocol_counts);
    RUN(test_gptq_text);
    RUN(test_keep_massive);
    RUN(test_kv_unbias);
    RUN(test_kv_bias_image);
    TEST_EXIT();
}
