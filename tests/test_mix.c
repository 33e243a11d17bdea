/* test_mix.c - repliq mix: the named tensors come from B byte for byte and the rest
 * from A, the provenance is recorded, the result loads; files of other models or
 * other activation settings, a pattern that matches nothing, and an MLP whose
 * matrices would disagree on their paths are refused, leaving nothing behind. */
#include <fnmatch.h>
#include <unistd.h>

#include "gguf.h"
#include "mix.h"
#include "model.h"
#include "quantize.h"
#include "recipe.h"
#include "replica.h"
#include "rq_test.h"
#include "tiny_model.h"
#include "util.h"

enum { N_FILES = 4 };
static char src[128], other[128], files[N_FILES][128], out[160];
static int32_t calib_tok[4 * 48];

/* files[0]: RTN W2 per row; [1]: RTN W4 g32; [2]: [1] with 8-bit activations;
 * [3]: W2 with the MLP as two paths (combined after the nonlinearity, trained). */
static int make_files(void) {
    tiny_spec sp = {"llama", 97, 64, 100, 2, 4, 2, 10000.0f, 5, RQ_GGML_F32, 0};
    if (tiny_model_write(&sp, src)) return -1;
    sp.n_ff = 96;
    if (tiny_model_write(&sp, other)) return -1;
    for (int i = 0; i < 4; i++) {
        rq_recipe r;
        rq_recipe_default(&r);
        r.base.method = RQ_METHOD_RTN;
        r.base.grid.bits = i == 0 || i == 3 ? 2 : 4;
        r.base.grid.group = i == 1 || i == 2 ? 32 : 0;
        if (i == 2) r.act.a_bits = 8;
        if (i == 3) {
            r.base.method = RQ_METHOD_GPTQ;
            r.base.grid.sym = true;
            r.base.rep = rq_rep_opts_default();
            r.base.rep.K = 1;
            rq_override ov = {.set = RQ_OV_REPLICATE};
            snprintf(ov.pattern, sizeof ov.pattern, "blk.*.ffn_*");
            ov.r = r.base;
            ov.r.rep.K = 2;
            ov.r.rep.combine = RQ_REP_COMBINE_MLP;
            ov.r.rep.init_spread = 0.05f;
            r.ov = rq_malloc(sizeof ov);
            r.ov[0] = ov;
            r.n_ov = 1;
            r.mlp_train_on = true;
            r.mlp_train.steps = 5;
            r.mlp_train.batch = 32;
            r.mlp_train.eval_every = 5;
        }
        rq_calib c = tiny_calib_windows(calib_tok, 4, 48, 97, 11u);
        rq_quant_job job = {.model = src, .calib = &c, .out_path = files[i]};
        rq_quant_report rep;
        int rc = rq_quantize_model(&job, &r, &rep);
        rq_recipe_free(&r);
        if (rc) {
            printf("  quantize %d: %s\n", i, rq_error());
            return -1;
        }
    }
    return 0;
}

static bool same_bytes(const rq_gguf_tensor *x, const rq_gguf_tensor *y) {
    return x->type == y->type && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
}

static bool str_is(const rq_gguf *g, const char *key, const char *want, size_t n) {
    rq_str s;
    return rq_gguf_find(g, key) && rq_gguf_get_str(g, key, &s) == 0 && s.len == n && !memcmp(s.ptr, want, n);
}

static void test_tensors_from_b(void) {
    const char *pats[2] = {"blk.1.*", "output_norm.weight"};
    rq_mix_report rep;
    REQUIRE(rq_mix(files[0], files[1], pats, 2, out, &rep) == 0);
    rq_gguf *m, *a, *b;
    REQUIRE(rq_gguf_open(out, &m) == 0 && rq_gguf_open(files[0], &a) == 0 && rq_gguf_open(files[1], &b) == 0);
    CHECK(rep.n_tensors == (int)a->n_tensors && m->n_tensors == a->n_tensors);
    CHECKF(rep.n_from_b == 10, "%d tensors from B (blk.1: 2 norms + 7 linears; output_norm)", rep.n_from_b);
    int from_a = 0, from_b = 0, wrong = 0;
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        const rq_gguf_tensor *t = &m->tensors[i];
        bool want_b = !fnmatch("blk.1.*", t->name, 0) || !strcmp(t->name, "output_norm.weight");
        const rq_gguf_tensor *ta = rq_gguf_tensor_find(a, t->name), *tb = rq_gguf_tensor_find(b, t->name);
        REQUIRE(ta && tb);
        if (want_b ? same_bytes(t, tb) : same_bytes(t, ta))
            want_b ? from_b++ : from_a++;
        else
            wrong++;
        /* the linears differ between A and B, so a swapped tensor cannot pass */
        if (rq_is_block_linear(t->name)) CHECKF(!same_bytes(ta, tb), "%s: A and B agree", t->name);
    }
    CHECKF(wrong == 0 && from_b == 10, "%d from B, %d from A, %d from neither", from_b, from_a, wrong);
    rq_str ra, rb;
    REQUIRE(rq_gguf_get_str(a, "repliq.recipe", &ra) == 0 && rq_gguf_get_str(b, "repliq.recipe", &rb) == 0);
    CHECK(str_is(m, "repliq.recipe", ra.ptr, ra.len));
    CHECK(str_is(m, "repliq.mix.b_recipe", rb.ptr, rb.len));
    CHECK(str_is(m, "repliq.mix.from_b", "blk.1.*,output_norm.weight", 26));
    CHECK(str_is(m, "repliq.mix.b", files[1], strlen(files[1])));
    char sha[65];
    REQUIRE(rq_sha256_file(files[1], sha) == 0);
    CHECK(str_is(m, "repliq.mix.b_sha256", sha, 64));
    int64_t n;
    CHECK(rq_gguf_get_int(m, "repliq.mix.n_from_b", &n) == 0 && n == 10);
    rq_model *mm = NULL;
    CHECKF(rq_model_load(out, &mm) == 0, "%s", rq_error());
    rq_model_free(mm);
    rq_gguf_close(m);
    rq_gguf_close(a);
    rq_gguf_close(b);
    unlink(out);
}

/* The model a file was quantized from mixes in too (its f32 layers: what quantizing
 * them costs); its absent activation keys read as none, as the file's. */
static void test_reference_layers(void) {
    const char *pats[1] = {"blk.0.*"};
    rq_mix_report rep;
    REQUIRE(rq_mix(files[0], src, pats, 1, out, &rep) == 0);
    rq_gguf *m, *r;
    REQUIRE(rq_gguf_open(out, &m) == 0 && rq_gguf_open(src, &r) == 0);
    const rq_gguf_tensor *t = rq_gguf_tensor_find(m, "blk.0.ffn_down.weight");
    CHECK(t && t->type == RQ_GGML_F32 && same_bytes(t, rq_gguf_tensor_find(r, "blk.0.ffn_down.weight")));
    CHECK(!rq_gguf_find(m, "repliq.mix.b_recipe")); /* the model has none */
    rq_gguf_close(m);
    rq_gguf_close(r);
    unlink(out);
}

/* Each refusal names its cause, and an existing output is left as it was. */
static void test_refusals(void) {
    FILE *f = fopen(out, "wb");
    REQUIRE(f && fputs("keep", f) >= 0 && fclose(f) == 0);
    const char *down[1] = {"blk.*.ffn_down.weight"}, *none[1] = {"blk.*.ffn_dwn.weight"},
               *gate[1] = {"blk.0.ffn_gate.weight"};
    struct {
        const char *a, *b;
        const char *const *pats;
        const char *msg;
    } cases[] = {
        {files[0], files[1], none, "matches no tensor"},  {files[0], files[2], down, "repliq.act.bits differs"},
        {files[0], other, down, "n_ff differs"},          {files[0], files[3], gate, "take all three from one file"},
        {files[3], files[0], gate, "runs as 2 paths in"}, {files[0], "/nonexistent/b.gguf", down, "cannot open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rq_mix_report rep;
        CHECKF(rq_mix(cases[i].a, cases[i].b, cases[i].pats, 1, out, &rep) == -1, "case %zu accepted", i);
        CHECKF(strstr(rq_error(), cases[i].msg) != NULL, "case %zu: %s", i, rq_error());
    }
    rq_mix_report rep;
    CHECK(rq_mix(files[0], files[1], down, 0, out, &rep) == -1 && strstr(rq_error(), "at least one pattern"));
    char partial[240];
    snprintf(partial, sizeof partial, "%s.mix-%d.partial", out, (int)getpid());
    CHECK(access(partial, F_OK) != 0);
    strcat(partial, ".tmp");
    CHECK(access(partial, F_OK) != 0);
    char *buf;
    size_t n;
    REQUIRE(rq_read_file(out, &buf, &n) == 0);
    CHECK(n == 4 && !memcmp(buf, "keep", 4));
    free(buf);
    /* the whole MLP of a block taken together loads */
    const char *mlp[1] = {"blk.0.ffn_*"};
    CHECKF(rq_mix(files[0], files[3], mlp, 1, out, &rep) == 0, "%s", rq_error());
    CHECK(rep.n_from_b == 4); /* gate, up, down and ffn_norm */
    unlink(out);
}

int main(void) {
    alarm(300); /* a hang is a failure */
    int pid = (int)getpid();
    snprintf(src, sizeof src, "/tmp/rq_mix_src_%d.gguf", pid);
    snprintf(other, sizeof other, "/tmp/rq_mix_other_%d.gguf", pid);
    for (int i = 0; i < N_FILES; i++)
        snprintf(files[i], sizeof files[i], "/tmp/rq_mix_%d_%d.gguf", i, pid);
    snprintf(out, sizeof out, "/tmp/rq_mix_out_%d.gguf", pid);
    if (make_files()) {
        printf("FAIL make_files\n");
        return 1;
    }
    RUN(test_tensors_from_b);
    RUN(test_reference_layers);
    RUN(test_refusals);
    unlink(src);
    unlink(other);
    for (int i = 0; i < N_FILES; i++)
        unlink(files[i]);
    TEST_EXIT();
}
