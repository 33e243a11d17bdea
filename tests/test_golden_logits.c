/* test_golden_logits.c - the forward pass against llama.cpp: logits of the first
 * 16 tokens of wiki.test.raw, from golden files written by llama.cpp itself
 * (scripts/make_golden.sh, format in scripts/llamacpp_logits.c), and perplexity
 * on the first chunks of wiki.test.raw against llama-perplexity's printed values.
 * Qwen2.5-1.5B runs only with REPLIQ_TEST_QWEN=1 (opt-in: it is large). */
#include <math.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "paths.h"
#include "ppl.h"
#include "rq_test.h"
#include "util.h"

typedef struct {
    uint32_t n_vocab, n_tokens, n_pos, slice_n, slice_stride, top_k;
    int32_t *tokens;
    const uint8_t *rec; /* n_pos records */
    size_t rec_size;
    char *buf;
} golden;

static int golden_read(const char *path, golden *g) {
    size_t len;
    if (rq_read_file(path, &g->buf, &len)) return -1;
    const uint8_t *p = (const uint8_t *)g->buf;
    uint32_t h[8];
    if (len < 40 || memcmp(p, "RQLOGITS", 8) != 0) return rq_fail("%s: not an RQLOGITS file", path);
    memcpy(h, p + 8, sizeof h);
    if (h[0] != 1) return rq_fail("%s: version %u, expected 1", path, h[0]);
    g->n_vocab = h[1];
    g->n_tokens = h[2];
    g->n_pos = h[3];
    g->slice_n = h[4];
    g->slice_stride = h[5];
    g->top_k = h[6];
    size_t off = 8 + 32 + h[7];
    g->rec_size = 4 * 8 + (size_t)g->top_k * 8 + (size_t)g->slice_n * 4;
    if (off + 4ull * g->n_tokens + g->rec_size * g->n_pos != len) return rq_fail("%s: size does not match its header", path);
    g->tokens = (int32_t *)(void *)(g->buf + off);
    g->rec = p + off + 4ull * g->n_tokens;
    return 0;
}

static void check_model_logits(const char *name, const char *fixture) {
    char p[1024];
    const char *path = rq_test_model(name, p, sizeof p);
    if (!path) SKIP("%s not cached", name);
    golden g = {0};
    REQUIRE(golden_read(fixture, &g) == 0);
    rq_model *m;
    REQUIRE(rq_model_load(path, &m) == 0);
    REQUIRE((uint32_t)m->cfg.n_vocab == g.n_vocab);
    int nv = m->cfg.n_vocab, T = (int)g.n_tokens;
    rq_fwd *f = rq_fwd_new(m, T);
    float *lg = rq_malloc((size_t)T * nv * sizeof(float));
    rq_fwd_logits(m, rq_fwd_hidden(f, g.tokens, T), T, lg);
    double worst_slice = 0, worst_lse = 0, worst_nll = 0, scale = 0;
    int top_mismatch = 0;
    for (uint32_t r = 0; r < g.n_pos; r++) {
        int pos = T - (int)g.n_pos + (int)r;
        const uint8_t *rec = g.rec + r * g.rec_size;
        double st[4];
        memcpy(st, rec, sizeof st);
        const int32_t *top_id = (const int32_t *)(const void *)(rec + 32);
        const float *top_lg = (const float *)(const void *)(rec + 32 + 4 * g.top_k);
        const float *slice = (const float *)(const void *)(rec + 32 + 8 * g.top_k);
        const float *row = lg + (size_t)pos * nv;
        float mx;
        double ls;
        rq_lse_stats(row, nv, &mx, &ls);
        double lse = mx + ls;
        worst_lse = fmax(worst_lse, fabs(lse - st[0]));
        if (pos + 1 < T) worst_nll = fmax(worst_nll, fabs((lse - row[g.tokens[pos + 1]]) - st[3]));
        for (uint32_t j = 0; j < g.slice_n; j++) {
            worst_slice = fmax(worst_slice, fabs((double)row[(size_t)j * g.slice_stride] - slice[j]));
            scale = fmax(scale, fabs((double)slice[j]));
        }
        /* the top ids must carry the same logits here (order may differ only among near-ties) */
        for (uint32_t k = 0; k < g.top_k; k++)
            if (fabs((double)row[top_id[k]] - top_lg[k]) > 1e-4 * fmax(1.0, fabs(top_lg[k]))) top_mismatch++;
        int am = 0;
        for (int i = 1; i < nv; i++)
            if (row[i] > row[am]) am = i;
        if (am != top_id[0] && fabs(row[am] - row[top_id[0]]) > 1e-3) top_mismatch++;
    }
    printf("  %s: %u positions; largest |logit diff| %.3g (max |logit| %.3g), |logsumexp diff| %.3g, "
           "|nll diff| %.3g\n",
           name, g.n_pos, worst_slice, scale, worst_lse, worst_nll);
    /* both in f32 (the fixture's llama.cpp run keeps K and V in f32 too): only
     * summation order differs; about 2e-6 of the largest logit was seen */
    CHECKF(worst_slice < 1e-5 * scale, "logits differ by %.3g", worst_slice);
    CHECKF(worst_nll < 2e-4, "nll differs by %.3g", worst_nll);
    CHECK(top_mismatch == 0);
    free(lg);
    rq_fwd_free(f);
    rq_model_free(m);
    free(g.buf);
}

static void test_smollm2_logits(void) {
    check_model_logits("smollm2-135m.gguf", "tests/fixtures/golden/logits-smollm2-135m.bin");
}

static void test_qwen_logits(void) {
    const char *q = getenv("REPLIQ_TEST_QWEN");
    if (!q || strcmp(q, "1")) SKIP("opt-in: REPLIQ_TEST_QWEN=1 (needs qwen2.5-coder-1.5b, 7 GB of f32)");
    check_model_logits("qwen2.5-coder-1.5b.gguf", "tests/fixtures/golden/logits-qwen2.5-coder-1.5b.bin");
}

/* PPL of the first 4 chunks (ctx 512) of wiki.test.raw; llama-perplexity printed
 * [4]22.7450 on the F32 conversion of the same file (docs/llamacpp-logs). */
static void test_smollm2_ppl_4_chunks(void) {
    char p[1024], t[1024];
    const char *path = rq_test_model("smollm2-135m.gguf", p, sizeof p);
    if (!path) SKIP("smollm2-135m not cached");
    if (!rq_test_data_dir()) SKIP("REPLIQ_DATA not set");
    snprintf(t, sizeof t, "%s/wiki.test.raw", rq_test_data_dir());
    char *text;
    size_t len;
    REQUIRE(rq_read_file(t, &text, &len) == 0);
    rq_model *m;
    REQUIRE(rq_model_load(path, &m) == 0);
    rq_ppl_params pp = {.protocol = RQ_PPL_LLAMACPP, .max_chunks = 4};
    rq_ppl_result r;
    REQUIRE(rq_ppl_run(m, &pp, text, len, &r) == 0);
    printf("  PPL(4 chunks) %.4f, llama.cpp 22.7450, relative difference %.2g\n", r.ppl, fabs(r.ppl / 22.7450 - 1));
    CHECK(r.n_scored == 4 * 255 && r.n_tokens == 303415);
    CHECK(fabs(r.ppl / 22.7450 - 1) < 5e-4);
    free(r.nll);
    free(text);
    rq_model_free(m);
}

int main(void) {
    RUN(test_smollm2_logits);
    RUN(test_qwen_logits);
    RUN(test_smollm2_ppl_4_chunks);
    TEST_EXIT();
}
