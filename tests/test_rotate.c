/* test_rotate.c - a rotated model is the same function: logits of tiny models of
 * each architecture (tied and untied output, QKV bias) before and after folding
 * R1/R2 and the online R3/R4, for every rotation kind; the rotated file's
 * metadata and norms; refusals; and SmolLM2's perplexity unchanged within 1e-4. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "ppl.h"
#include "rotate.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "util.h"

static char path_a[128], path_b[128];

static void paths(void) {
    snprintf(path_a, sizeof path_a, "/tmp/rq_rot_a_%d.gguf", (int)getpid());
    snprintf(path_b, sizeof path_b, "/tmp/rq_rot_b_%d.gguf", (int)getpid());
}

/* max |a-b| / max|b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

enum { T = 40 };

static float *logits_of(const char *path, rq_model **keep) {
    rq_model *m = NULL;
    if (rq_model_load(path, &m)) {
        printf("  load %s: %s\n", path, rq_error());
        return NULL;
    }
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 37 + 11) % m->cfg.n_vocab;
    float *lg = malloc((size_t)T * m->cfg.n_vocab * sizeof(float));
    rq_fwd *f = rq_fwd_new(m, T);
    if (!f) {
        printf("  fwd: %s\n", rq_error());
        free(lg);
        rq_model_free(m);
        return NULL;
    }
    rq_fwd_logits(m, rq_fwd_hidden(f, tok, T), T, lg);
    rq_fwd_free(f);
    *keep = m;
    return lg;
}

typedef struct {
    const char *name;
    rq_rot_opts o;
} rot_case;

static const rot_case cases[] = {
    {"R1 rh, R2 rh", {RQ_ORTH_RH, RQ_ORTH_RH, RQ_ROT_NONE, RQ_ROT_NONE, 1, NULL, NULL, NULL}},
    {"R1 ro, R2 hadamard", {RQ_ORTH_RO, RQ_ORTH_HADAMARD, RQ_ROT_NONE, RQ_ROT_NONE, 2, NULL, NULL, NULL}},
    {"R1 hadamard, R2 ro, R3 rh, R4 rh", {RQ_ORTH_HADAMARD, RQ_ORTH_RO, RQ_ORTH_RH, RQ_ORTH_RH, 3, NULL, NULL, NULL}},
    {"online only: R3 hadamard, R4 ro", {RQ_ROT_NONE, RQ_ROT_NONE, RQ_ORTH_HADAMARD, RQ_ORTH_RO, 4, NULL, NULL, NULL}},
};

/* n_ff 48 = 4 x 12 has a Hadamard matrix; 100 does not here, so R4 takes the fallback */
static void check_arch(const char *arch, int tied, int n_ff) {
    paths();
    tiny_spec sp = {arch, 97, 32, n_ff, 2, 4, 2, 10000.0f, 11, RQ_GGML_F32, tied};
    REQUIRE(tiny_model_write(&sp, path_a) == 0);
    rq_model *ma = NULL;
    float *ref = logits_of(path_a, &ma);
    REQUIRE(ref != NULL);
    size_t nl = (size_t)T * ma->cfg.n_vocab;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const rot_case *k = &cases[c];
        if (rq_rotate_file(path_a, path_b, &k->o, false)) {
            printf("  %s %s: %s\n", arch, k->name, rq_error());
            CHECK(0);
            continue;
        }
        rq_model *mb = NULL;
        float *got = logits_of(path_b, &mb);
        CHECK(got != NULL);
        if (!got) continue;
        double e = rel_err(got, ref, nl);
        printf("  %s%s n_ff %d, %s: logits relative error %.3g\n", arch, tied ? " tied" : "", n_ff, k->name, e);
        CHECKF(e < 2e-5, "%s %s: %.3g", arch, k->name, e);
        /* the weights did change (else the check above could not fail) */
        if (k->o.r1 != RQ_ROT_NONE) {
            CHECK(rel_err(mb->tok_embd, ma->tok_embd, (size_t)ma->cfg.n_vocab * ma->cfg.n_embd) > 0.05);
            for (int i = 0; i < ma->cfg.n_embd; i++)
                CHECK(mb->layers[0].attn_norm[i] == 1.0f && mb->out_norm[i] == 1.0f);
            CHECK(!mb->cfg.tied_output); /* untied: the output matrix carries the final norm */
        }
        if (k->o.r4 != RQ_ROT_NONE) {
            CHECK(rel_err(mb->layers[0].down.w, ma->layers[0].down.w, (size_t)ma->cfg.n_embd * ma->cfg.n_ff) > 0.05);
            /* the scalar reference applies the online transforms too (dense, by definition) */
            int32_t tok[T];
            for (int i = 0; i < T; i++)
                tok[i] = (i * 37 + 11) % mb->cfg.n_vocab;
            float *sref = malloc(nl * sizeof *sref);
            CHECK(rq_forward_ref(mb, tok, T, sref) == 0);
            double es = rel_err(got, sref, nl);
            CHECKF(es < 1e-5, "%s %s: batched vs scalar reference %.3g", arch, k->name, es);
            free(sref);
        }
        CHECK(mb->online.r3 == k->o.r3 && mb->online.r4 == k->o.r4 && mb->online.seed == k->o.seed);
        free(got);
        rq_model_free(mb);
    }
    free(ref);
    rq_model_free(ma);
    unlink(path_a);
    unlink(path_b);
}

static void test_llama_untied(void) { check_arch("llama", 0, 48); }
static void test_llama_tied(void) { check_arch("llama", 1, 48); }
static void test_qwen2_bias(void) { check_arch("qwen2", 0, 48); }
static void test_fallback_order(void) { check_arch("llama", 0, 100); }

/* Without R4 the online transform would be missing: the forward pass must apply
 * the one the file names, so dropping it changes the logits. */
static void test_online_is_needed(void) {
    paths();
    tiny_spec sp = {"llama", 97, 32, 48, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    REQUIRE(tiny_model_write(&sp, path_a) == 0);
    rq_rot_opts o = {RQ_ROT_NONE, RQ_ROT_NONE, RQ_ROT_NONE, RQ_ORTH_RH, 9, NULL, NULL, NULL};
    REQUIRE(rq_rotate_file(path_a, path_b, &o, false) == 0);
    rq_model *ma = NULL, *mb = NULL;
    float *ref = logits_of(path_a, &ma), *got = logits_of(path_b, &mb);
    REQUIRE(ref && got);
    size_t nl = (size_t)T * ma->cfg.n_vocab;
    CHECK(rel_err(got, ref, nl) < 2e-5);
    mb->online.r4 = RQ_ROT_NONE;
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 37 + 11) % mb->cfg.n_vocab;
    rq_fwd *f = rq_fwd_new(mb, T);
    rq_fwd_logits(mb, rq_fwd_hidden(f, tok, T), T, got);
    rq_fwd_free(f);
    CHECK(rel_err(got, ref, nl) > 1e-3);
    free(ref);
    free(got);
    rq_model_free(ma);
    rq_model_free(mb);
    unlink(path_a);
    unlink(path_b);
}

static void test_refusals(void) {
    paths();
    tiny_spec sp = {"llama", 97, 32, 48, 1, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    REQUIRE(tiny_model_write(&sp, path_a) == 0);
    rq_rot_opts o = {RQ_ORTH_RH, RQ_ROT_NONE, RQ_ROT_NONE, RQ_ROT_NONE, 0, NULL, NULL, NULL};
    REQUIRE(rq_rotate_file(path_a, path_b, &o, false) == 0);
    /* rotating twice would fold norms that are already folded */
    CHECK(rq_rotate_file(path_b, path_a, &o, false) != 0 && strstr(rq_error(), "already rotated"));
    unlink(path_b);
    rq_rot_opts bad = {7, RQ_ROT_NONE, RQ_ROT_NONE, RQ_ROT_NONE, 0, NULL, NULL, NULL};
    CHECK(rq_rotate_file(path_a, path_b, &bad, false) != 0 && strstr(rq_error(), "R1"));
    CHECK(access(path_b, F_OK) != 0); /* nothing written */
    CHECK(rq_rotate_file("/nonexistent/model.gguf", path_b, &o, false) != 0);
    /* seeds are stored as GGUF integers: one past 2^63-1 would not read back */
    rq_rot_opts big = {RQ_ORTH_RH, RQ_ROT_NONE, RQ_ROT_NONE, RQ_ORTH_RH, (uint64_t)INT64_MAX + 1, NULL, NULL, NULL};
    CHECK(rq_rotate_file(path_a, path_b, &big, false) != 0 && strstr(rq_error(), "seed"));
    CHECK(access(path_b, F_OK) != 0);
    CHECK(rq_rotate_file("/tmp", path_b, &o, false) != 0 && strstr(rq_error(), "folder"));
    unlink(path_a);
}

/* The requirement: the rotated model's f32 perplexity equals the
 * reference's within 1e-4 relative (SmolLM2, 4 chunks of 512). */
static void test_smollm2_ppl_unchanged(void) {
    char mp[512], tp[600];
    const char *data = rq_test_data_dir();
    if (!rq_test_model("smollm2-135m.gguf", mp, sizeof mp) || !data) SKIP("SmolLM2 or REPLIQ_DATA missing");
    snprintf(tp, sizeof tp, "%s/wiki.test.raw", data);
    paths();
    rq_rot_opts o = {RQ_ORTH_RH, RQ_ORTH_RH, RQ_ORTH_HADAMARD, RQ_ORTH_HADAMARD, 0, NULL, NULL, NULL};
    REQUIRE(rq_rotate_file(mp, path_b, &o, false) == 0);
    rq_ppl_params p = {.protocol = RQ_PPL_LLAMACPP, .n_ctx = 512, .max_chunks = 4, .add_bos = true};
    char *text = NULL;
    size_t len = 0;
    REQUIRE(rq_read_file(tp, &text, &len) == 0);
    double ppl[2];
    const char *files[2] = {mp, path_b};
    for (int i = 0; i < 2; i++) {
        rq_model *m = NULL;
        REQUIRE(rq_model_load(files[i], &m) == 0);
        rq_ppl_result r;
        int rc = rq_ppl_run(m, &p, text, len, &r);
        rq_model_free(m);
        REQUIRE(rc == 0);
        ppl[i] = r.ppl;
        free(r.nll);
    }
    free(text);
    double rel = fabs(ppl[1] - ppl[0]) / ppl[0];
    printf("  SmolLM2 f32, 4 x 512 tokens: reference %.6f, rotated (R1 rh, R2 rh, R3/R4 hadamard) %.6f, rel %.2g\n",
           ppl[0], ppl[1], rel);
    CHECK(rel < 1e-4);
    unlink(path_b);
}

int main(void) {
    RUN(test_llama_untied);
    RUN(test_llama_tied);
    RUN(test_qwen2_bias);
    RUN(test_fallback_order);
    RUN(test_online_is_needed);
    RUN(test_refusals);
    RUN(test_smollm2_ppl_unchanged);
    TEST_EXIT();
}
