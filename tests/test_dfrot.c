/* test_dfrot.c - DFRot's pieces: the Procrustes step never raises its objective
 * and returns an orthogonal matrix; the fit lowers the quantization loss of
 * activations with an outlier channel; weights move the fit toward the heavy
 * rows; and on SmolLM2 the refined model is still the same function. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "dfrot.h"
#include "forward.h"
#include "gguf.h"
#include "grid.h"
#include "hadamard.h"
#include "model.h"
#include "rq_test.h"
#include "util.h"

/* X[rows, n] Gaussian-ish, with channel 3 carrying large values on every row
 * and, on the first `heavy` rows, a massive entry in channel 5 */
static float *make_x(int64_t rows, int64_t n, int heavy, uint64_t seed) {
    float *x = malloc((size_t)(rows * n) * sizeof *x);
    rq_rng r;
    rq_rng_seed(&r, seed, 0);
    for (int64_t i = 0; i < rows * n; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++)
            u += rq_rng_uniform(&r) - 0.5;
        x[i] = (float)u;
    }
    for (int64_t i = 0; i < rows; i++) {
        x[i * n + 3] *= 20.0f;
        if (i < heavy) x[i * n + 5] = 400.0f;
    }
    return x;
}

static double orth_err(const float *R, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++)
                s += (double)R[k * n + i] * R[k * n + j];
            e = fmax(e, fabs(s - (i == j)));
        }
    return e;
}

static void test_step_never_raises(void) {
    const int64_t n = 48, rows = 600;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        float *x = make_x(rows, n, 8, seed);
        float *w = malloc((size_t)rows * sizeof *w);
        for (int64_t i = 0; i < rows; i++)
            w[i] = i < 8 ? 100.0f : 1.0f;
        rq_orth *q = rq_orth_new(n, RQ_ORTH_RO, seed);
        float *R = malloc((size_t)(n * n) * sizeof *R), *Rn = malloc((size_t)(n * n) * sizeof *Rn);
        rq_orth_dense(q, R);
        rq_orth_free(q);
        int bits = seed % 2 ? 4 : 3;
        for (int it = 0; it < 3; it++) {
            double before, after;
            double loss;
            REQUIRE(rq_dfrot_step(x, seed % 3 ? w : NULL, rows, n, R, bits, 1.0f, Rn, &before, &after, &loss) == 0);
            CHECK(loss == rq_dfrot_loss(x, seed % 3 ? w : NULL, rows, n, R, bits, 1.0f));
            CHECKF(after <= before * (1 + 1e-5) + 1e-6, "seed %llu it %d: %.9g -> %.9g", (unsigned long long)seed, it,
                   before, after);
            double oe = orth_err(Rn, n);
            CHECKF(oe < 1e-4, "R not orthogonal: %.3g", oe);
            memcpy(R, Rn, (size_t)(n * n) * sizeof *R);
        }
        free(x);
        free(w);
        free(R);
        free(Rn);
    }
}

static void test_fit_lowers_loss(void) {
    const int64_t n = 64, rows = 1000;
    float *x = make_x(rows, n, 0, 42);
    rq_dfrot_opts o = rq_dfrot_defaults();
    o.iters = 20;
    float *R = malloc((size_t)(n * n) * sizeof *R);
    rq_dfrot_report rep;
    REQUIRE(rq_dfrot_fit(x, NULL, rows, n, &o, R, &rep) == 0);
    printf("  outlier channel, A4: loss %.5g -> %.5g (best at %d)\n", rep.loss_start, rep.loss_best, rep.best_iter);
    CHECK(rep.loss_best < 0.9 * rep.loss_start);
    CHECK(rep.best_iter > 0);
    CHECK(fabs(rq_dfrot_loss(x, NULL, rows, n, R, 4, 1.0f) - rep.loss_best) <= 1e-6 * rep.loss_best);
    CHECK(orth_err(R, n) < 1e-4);
    /* zero iterations keep the start */
    o.iters = 0;
    REQUIRE(rq_dfrot_fit(x, NULL, rows, n, &o, R, &rep) == 0);
    CHECK(rep.loss_best == rep.loss_start && rep.best_iter == 0 && R[0] == 1.0f && R[1] == 0.0f);
    o.a_bits = 1;
    CHECK(rq_dfrot_fit(x, NULL, rows, n, &o, R, &rep) != 0 && strstr(rq_error(), "a_bits"));
    free(x);
    free(R);
}

/* Weighting the rows with a massive entry makes the fit care about them: their
 * share of the loss falls further than without weights. */
static void test_weights_matter(void) {
    const int64_t n = 32, rows = 800;
    const int heavy = 4;
    float *x = make_x(rows, n, heavy, 7);
    float *w = malloc((size_t)rows * sizeof *w);
    for (int64_t i = 0; i < rows; i++)
        w[i] = i < heavy ? 1e4f : 1.0f;
    rq_dfrot_opts o = rq_dfrot_defaults();
    o.iters = 15;
    float *Ru = malloc((size_t)(n * n) * sizeof *Ru), *Rw = malloc((size_t)(n * n) * sizeof *Rw);
    rq_dfrot_report rep;
    REQUIRE(rq_dfrot_fit(x, NULL, rows, n, &o, Ru, &rep) == 0);
    REQUIRE(rq_dfrot_fit(x, w, rows, n, &o, Rw, &rep) == 0);
    double hu = rq_dfrot_loss(x, NULL, heavy, n, Ru, 4, 1.0f), hw = rq_dfrot_loss(x, NULL, heavy, n, Rw, 4, 1.0f);
    printf("  heavy rows' loss: unweighted fit %.5g, weighted fit %.5g\n", hu, hw);
    CHECK(hw < hu);
    free(x);
    free(w);
    free(Ru);
    free(Rw);
}

/* The refined model computes what the original does (SmolLM2, 2 iterations on
 * 256 calibration tokens to stay quick). */
static void test_smollm2_same_function(void) {
    char mp[512], cp[600];
    const char *data = rq_test_data_dir();
    if (!rq_test_model("smollm2-135m.gguf", mp, sizeof mp) || !data) SKIP("SmolLM2 or REPLIQ_DATA missing");
    snprintf(cp, sizeof cp, "%s/c4-en-validation-sample-2000.jsonl.xz", data);
    char out[128];
    snprintf(out, sizeof out, "/tmp/rq_dfrot_%d.gguf", (int)getpid());
    rq_dfrot_opts o = rq_dfrot_defaults();
    o.iters = 2;
    o.calib_len = 256;
    rq_dfrot_report rep;
    REQUIRE(rq_dfrot_model(mp, cp, out, RQ_ORTH_RH, RQ_ORTH_HADAMARD, RQ_ORTH_HADAMARD, &o, &rep) == 0);
    printf("  SmolLM2: %lld rows (%lld massive), loss %.5g -> %.5g\n", (long long)rep.rows, (long long)rep.massive_rows,
           rep.loss_start, rep.loss_best);
    CHECK(rep.rows == 30 * 2 * 256);
    CHECK(rep.massive_rows > 0); /* SmolLM2's first token carries channel 507's massive activation */
    CHECK(rep.best_iter > 0 && rep.loss_best < rep.loss_start); /* R != I, so R1 = H R is not plain H */
    rq_gguf *g = NULL;
    REQUIRE(rq_gguf_open(out, &g) == 0);
    rq_str s1, info;
    CHECK(rq_gguf_get_str(g, "repliq.rot.r1", &s1) == 0 && rq_str_eq(s1, "dfrot"));
    CHECK(rq_gguf_get_str(g, "repliq.rot.info", &info) == 0 && info.len > 20);
    rq_gguf_close(g);
    rq_model *a = NULL, *b = NULL;
    REQUIRE(rq_model_load(mp, &a) == 0);
    REQUIRE(rq_model_load(out, &b) == 0);
    enum { T = 24 };
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 997 + 13) % a->cfg.n_vocab;
    size_t nl = (size_t)T * a->cfg.n_vocab;
    float *la = malloc(nl * sizeof *la), *lb = malloc(nl * sizeof *lb);
    rq_fwd *fa = rq_fwd_new(a, T), *fb = rq_fwd_new(b, T);
    rq_fwd_logits(a, rq_fwd_hidden(fa, tok, T), T, la);
    rq_fwd_logits(b, rq_fwd_hidden(fb, tok, T), T, lb);
    double d = 0, s = 0;
    for (size_t i = 0; i < nl; i++) {
        d = fmax(d, fabs((double)la[i] - lb[i]));
        s = fmax(s, fabs((double)la[i]));
    }
    printf("  logits: max |diff| %.3g of max %.3g\n", d, s);
    CHECK(d / s < 1e-4);
    rq_fwd_free(fa);
    rq_fwd_free(fb);
    free(la);
    free(lb);
    rq_model_free(a);
    rq_model_free(b);
    unlink(out);
}

int main(void) {
    RUN(test_step_never_raises);
    RUN(test_fit_lowers_loss);
    RUN(test_weights_matter);
    RUN(test_smollm2_same_function);
    TEST_EXIT();
}
