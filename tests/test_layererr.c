/* test_layererr.c - the layer objective on a text (layererr.h): on the
 * calibration windows it reproduces what quantize reported for every tensor;
 * a model against itself errs by exactly zero; mismatched files are refused. */
#include <unistd.h>

#include "layererr.h"
#include "quantize.h"
#include "rotate.h"
#include "rq_test.h"
#include "tiny_model.h"

static char src_path[128], out_path[128], other_path[128], rot_path[128];
static int32_t calib_tok[4 * 48];

static rq_calib tiny_calib(void) { return tiny_calib_windows(calib_tok, 4, 48, 97, 7u); }

#define MAX_T 64
typedef struct {
    int n;
    char name[MAX_T][48];
    double rel[MAX_T];
} tensor_log;

static void on_tensor(void *ctx, const rq_tensor_stat *st) {
    tensor_log *lg = ctx;
    if (lg->n >= MAX_T) return;
    snprintf(lg->name[lg->n], sizeof lg->name[0], "%s", st->name);
    lg->rel[lg->n++] = st->rel_err;
}

/* GPTQ W2 per row of the model at path into out_path, its per-tensor errors into lg. */
static int quantize_path(const char *path, bool true_seq, tensor_log *lg) {
    rq_recipe r;
    rq_recipe_default(&r);
    r.base.grid.bits = 2;
    r.base.grid.sym = true;
    r.base.grid.group = 0;
    r.calib_true_seq = true_seq;
    rq_calib c = tiny_calib();
    rq_quant_job job = {.model = path, .calib = &c, .out_path = out_path, .on_tensor = on_tensor, .on_tensor_ctx = lg};
    rq_quant_report rep;
    int rc = rq_quantize_model(&job, &r, &rep);
    if (rc) printf("  quantize: %s\n", rq_error());
    rq_recipe_free(&r);
    return rc;
}

static int quantize_w2(const char *arch, bool true_seq, tensor_log *lg) {
    /* n_ff 100 and 64 columns: every matrix has at most 256 rows, so quantize measures its error on all rows */
    tiny_spec sp = {arch, 97, 64, 100, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    if (tiny_model_write(&sp, src_path)) return -1;
    return quantize_path(src_path, true_seq, lg);
}

static double logged(const tensor_log *lg, const char *name) {
    for (int i = 0; i < lg->n; i++)
        if (!strcmp(lg->name[i], name)) return lg->rel[i];
    return -1;
}

/* True-sequential GPTQ fits each linear on the inputs of the model quantized so
 * far, which are the quantized model's own activations: the errors agree. */
static void test_matches_quantize_log(void) {
    const char *arch[2] = {"llama", "qwen2"};
    for (int a = 0; a < 2; a++) {
        tensor_log lg = {0};
        REQUIRE(quantize_w2(arch[a], true, &lg) == 0);
        REQUIRE(lg.n == 14);
        rq_lerr le;
        REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) == 0);
        REQUIRE(le.n == 14 && le.n_tokens == 4 * 48);
        double worst = 0;
        for (int i = 0; i < le.n; i++) {
            double want = logged(&lg, le.e[i].name), got = rq_lerr_rel(&le.e[i]);
            CHECKF(want > 0, "%s: not in the quantize log", le.e[i].name);
            double d = fabs(got - want) / want;
            if (d > worst) worst = d;
            CHECKF(d < 1e-5, "%s %s: %.6g here, %.6g in the quantize log", arch[a], le.e[i].name, got, want);
        }
        printf("  %s: 14 tensors, largest relative difference to the quantize log %.2g\n", arch[a], worst);
        rq_lerr_free(&le);
    }
}

/* Without true-sequential the output projection was fitted on inputs from the
 * unquantized Q/K/V, which the quantized model does not produce: the errors
 * differ there, and agree for block 0's Q/K/V (same inputs either way). */
static void test_differs_without_true_sequential(void) {
    tensor_log lg = {0};
    REQUIRE(quantize_w2("llama", false, &lg) == 0);
    rq_lerr le;
    REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) == 0);
    double q = logged(&lg, "blk.0.attn_q.weight"), o = logged(&lg, "blk.0.attn_output.weight");
    CHECKF(fabs(rq_lerr_rel(&le.e[0]) - q) < 1e-3 * q, "blk.0.attn_q: %.6g vs %.6g", rq_lerr_rel(&le.e[0]), q);
    CHECKF(fabs(rq_lerr_rel(&le.e[3]) - o) > 1e-3 * o, "blk.0.attn_output: %.6g vs %.6g", rq_lerr_rel(&le.e[3]), o);
    rq_lerr_free(&le);
}

/* A model against itself: zero error, nonzero output energy. Fed by the
 * reference instead, block 0's Q/K/V see the same embeddings (the token table is
 * not quantized), later blocks do not. */
static void test_self_and_feeds(void) {
    tensor_log lg = {0};
    REQUIRE(quantize_w2("qwen2", true, &lg) == 0);
    rq_lerr self;
    REQUIRE(rq_layer_errors(src_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &self) == 0);
    for (int i = 0; i < self.n; i++)
        CHECKF(self.e[i].err == 0 && self.e[i].ref > 0, "%s: err %g ref %g", self.e[i].name, self.e[i].err,
               self.e[i].ref);
    rq_lerr_free(&self);
    rq_lerr fq, fr;
    REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &fq) == 0);
    REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_REF, false, &fr) == 0);
    for (int j = 0; j < 3; j++)
        CHECKF(fq.e[j].err == fr.e[j].err && fq.e[j].ref == fr.e[j].ref, "%s differs between feeds", fq.e[j].name);
    CHECKF(fq.e[7].err != fr.e[7].err, "blk.1.attn_q: the feeds agree (%g)", fq.e[7].err);
    rq_lerr_free(&fq);
    rq_lerr_free(&fr);
}

/* The offset part of the error is at most all of it, and all of it on one token
 * (the mean over one token is that token). */
static void test_mean_share(void) {
    tensor_log lg = {0};
    REQUIRE(quantize_w2("llama", true, &lg) == 0);
    rq_lerr one, all;
    REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 1, 1, RQ_LERR_FEED_QUANT, false, &one) == 0);
    REQUIRE(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &all) == 0);
    double lo = 1;
    for (int i = 0; i < one.n; i++) {
        CHECKF(fabs(rq_lerr_mean_share(&one.e[i]) - 1) < 1e-12, "%s: one token, share %.15g", one.e[i].name,
               rq_lerr_mean_share(&one.e[i]));
        double sh = rq_lerr_mean_share(&all.e[i]);
        CHECKF(sh >= 0 && sh <= 1 + 1e-12, "%s: share %g", all.e[i].name, sh);
        if (sh < lo) lo = sh;
    }
    CHECKF(lo < 0.5, "192 tokens: the smallest offset share is %g", lo);
    /* the same window twice: twice the error and twice its offset part (so the offset is
     * normalized by all the tokens, not by one window's) */
    int32_t twice[2 * 48];
    memcpy(twice, calib_tok, 48 * sizeof *twice);
    memcpy(twice + 48, calib_tok, 48 * sizeof *twice);
    rq_lerr w1, w2;
    REQUIRE(rq_layer_errors(out_path, src_path, twice, 1, 48, RQ_LERR_FEED_QUANT, false, &w1) == 0);
    REQUIRE(rq_layer_errors(out_path, src_path, twice, 2, 48, RQ_LERR_FEED_QUANT, false, &w2) == 0);
    for (int i = 0; i < w1.n; i++)
        CHECKF(fabs(w2.e[i].err - 2 * w1.e[i].err) <= 1e-9 * w1.e[i].err &&
                   fabs(w2.e[i].err_mean - 2 * w1.e[i].err_mean) <= 1e-9 * w1.e[i].err_mean,
               "%s: err %.10g -> %.10g, offset part %.10g -> %.10g", w1.e[i].name, w1.e[i].err, w2.e[i].err,
               w1.e[i].err_mean, w2.e[i].err_mean);
    rq_lerr_free(&w1);
    rq_lerr_free(&w2);
    rq_lerr_free(&one);
    rq_lerr_free(&all);
}

/* A rotated model (R1/R2 folded, R3/R4 online): the quantized file agrees with the
 * log against the rotated file, and the unrotated file, or one rotated with
 * another seed, is refused. */
static void test_rotated(void) {
    tiny_spec sp = {"qwen2", 97, 64, 100, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    REQUIRE(tiny_model_write(&sp, src_path) == 0);
    rq_rot_opts o = {RQ_ORTH_RH, RQ_ORTH_RH, RQ_ORTH_RH, RQ_ORTH_RH, 3, NULL, NULL, NULL};
    REQUIRE(rq_rotate_file(src_path, rot_path, &o, false) == 0);
    tensor_log lg = {0};
    REQUIRE(quantize_path(rot_path, true, &lg) == 0);
    rq_lerr le;
    REQUIRE(rq_layer_errors(out_path, rot_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) == 0);
    for (int i = 0; i < le.n; i++) {
        double want = logged(&lg, le.e[i].name), got = rq_lerr_rel(&le.e[i]);
        CHECKF(want > 0 && fabs(got - want) < 1e-5 * want, "%s: %.6g here, %.6g logged", le.e[i].name, got, want);
    }
    rq_lerr_free(&le);
    CHECK(rq_layer_errors(out_path, src_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECKF(strstr(rq_error(), "repliq.rot.r1 differs") != NULL, "%s", rq_error());
    o.seed = 4;
    REQUIRE(rq_rotate_file(src_path, other_path, &o, false) == 0);
    CHECK(rq_layer_errors(out_path, other_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECKF(strstr(rq_error(), "repliq.rot.seed differs") != NULL, "%s", rq_error());
}

static void test_refusals(void) {
    tensor_log lg = {0};
    REQUIRE(quantize_w2("llama", true, &lg) == 0);
    tiny_spec sp = {"llama", 97, 64, 96, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    REQUIRE(tiny_model_write(&sp, other_path) == 0);
    rq_lerr le;
    CHECK(rq_layer_errors(out_path, other_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECKF(strstr(rq_error(), "n_ff differs") != NULL, "%s", rq_error());
    CHECK(le.n == 0 && le.e == NULL);
    sp.n_ff = 100;
    sp.arch = "qwen2";
    REQUIRE(tiny_model_write(&sp, other_path) == 0);
    CHECK(rq_layer_errors(out_path, other_path, calib_tok, 4, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECKF(strstr(rq_error(), "architectures differ") != NULL, "%s", rq_error());
    int32_t bad[48];
    memcpy(bad, calib_tok, sizeof bad);
    bad[17] = 97;
    CHECK(rq_layer_errors(out_path, src_path, bad, 1, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECKF(strstr(rq_error(), "outside the vocabulary") != NULL, "%s", rq_error());
    CHECK(rq_layer_errors(out_path, src_path, calib_tok, 0, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
    CHECK(rq_layer_errors("/nonexistent.gguf", src_path, calib_tok, 1, 48, RQ_LERR_FEED_QUANT, false, &le) != 0);
}

int main(void) {
    snprintf(src_path, sizeof src_path, "/tmp/rq_tle_src_%d.gguf", (int)getpid());
    snprintf(out_path, sizeof out_path, "/tmp/rq_tle_out_%d.gguf", (int)getpid());
    snprintf(other_path, sizeof other_path, "/tmp/rq_tle_other_%d.gguf", (int)getpid());
    snprintf(rot_path, sizeof rot_path, "/tmp/rq_tle_rot_%d.gguf", (int)getpid());
    RUN(test_matches_quantize_log);
    RUN(test_differs_without_true_sequential);
    RUN(test_self_and_feeds);
    RUN(test_mean_share);
    RUN(test_rotated);
    RUN(test_refusals);
    unlink(src_path);
    unlink(rot_path);
    unlink(out_path);
    unlink(other_path);
    TEST_EXIT();
}
