/* test_kl.c - KL divergence against a saved base: zero against itself, positive
 * for another model, refused for a different token stream, count or context. */
#include <math.h>

#include "kl.h"
#include "ppl.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "util.h"

static rq_model *tiny(unsigned seed) {
    tiny_spec sp = {"llama", 300, 32, 48, 2, 4, 2, 10000.0f, seed, RQ_GGML_F32, 0};
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_tiny_kl_%d.gguf", (int)getpid());
    if (tiny_model_write(&sp, path)) return NULL;
    rq_model *m = NULL;
    rq_model_load(path, &m);
    unlink(path);
    return m;
}

enum { N = 200 };
static int32_t tok[N];

static int run(rq_model *m, void (*fn)(void *, int64_t, const float *, int, int32_t), void *ctx, int n) {
    rq_ppl_params p = {.protocol = RQ_PPL_GPTQ, .n_ctx = 64, .on_scored = fn, .on_scored_ctx = ctx};
    rq_ppl_result r;
    int rc = rq_ppl_eval_tokens(m, &p, tok, (size_t)n, &r);
    free(r.nll);
    return rc;
}

static void test_kl(void) {
    for (int i = 0; i < N; i++) tok[i] = (i * 13 + 7) % 300;
    rq_model *a = tiny(1), *b = tiny(2);
    REQUIRE(a && b);
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_kl_%d.bin", (int)getpid());
    rq_kl_saver *s = rq_kl_saver_open(path, 300, RQ_PPL_GPTQ, 64);
    REQUIRE(s != NULL);
    REQUIRE(run(a, rq_kl_saver_row, s, N) == 0);
    REQUIRE(rq_kl_saver_close(s) == 0);
    /* against itself */
    rq_kl_cmp *c;
    rq_kl_result r;
    REQUIRE(rq_kl_cmp_open(path, 300, RQ_PPL_GPTQ, 64, &c) == 0);
    REQUIRE(run(a, rq_kl_cmp_row, c, N) == 0);
    REQUIRE(rq_kl_cmp_finish(c, &r) == 0);
    CHECK(r.n == 3 * 63 && fabs(r.kl_mean) < 1e-6 && r.top1_agree == 1.0 && fabs(r.dnll_mean) < 1e-6);
    /* against another model: KL > 0 (44 of the 300 ids fall in the base's tail bucket) */
    REQUIRE(rq_kl_cmp_open(path, 300, RQ_PPL_GPTQ, 64, &c) == 0);
    REQUIRE(run(b, rq_kl_cmp_row, c, N) == 0);
    REQUIRE(rq_kl_cmp_finish(c, &r) == 0);
    CHECKF(r.kl_mean > 1e-3 && r.top1_agree < 1.0, "kl %g agree %g", r.kl_mean, r.top1_agree);
    CHECK(r.tail_mass_max > 0 && r.tail_mass_max < 1);
    /* different tokens are detected */
    tok[70] = (tok[70] + 1) % 300;
    REQUIRE(rq_kl_cmp_open(path, 300, RQ_PPL_GPTQ, 64, &c) == 0);
    REQUIRE(run(b, rq_kl_cmp_row, c, N) == 0);
    CHECK(rq_kl_cmp_finish(c, &r) != 0 && strstr(rq_error(), "token streams differ"));
    tok[70] = (tok[70] + 299) % 300;
    /* fewer chunks than the base is refused */
    REQUIRE(rq_kl_cmp_open(path, 300, RQ_PPL_GPTQ, 64, &c) == 0);
    REQUIRE(run(b, rq_kl_cmp_row, c, 150) == 0);
    CHECK(rq_kl_cmp_finish(c, &r) != 0 && strstr(rq_error(), "use the same --chunks"));
    /* wrong context is refused at open */
    CHECK(rq_kl_cmp_open(path, 300, RQ_PPL_GPTQ, 128, &c) != 0);
    unlink(path);
    rq_model_free(a);
    rq_model_free(b);
}

int main(void) {
    RUN(test_kl);
    TEST_EXIT();
}
