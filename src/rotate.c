/* rotate.c - fold RMSNorm scales into the following linear layers and rotate a
 * Llama / Qwen2 model (R1, R2, and the folded half of R4), writing an f32 GGUF.
 *
 * Row-vector convention (hadamard.h): a transform acts as x <- x Q. A linear
 * layer computes y = x W^T (+ b), W[rows, cols]. Then
 *   - a layer that reads a rotated input x Q keeps its output when W <- W Q;
 *   - a layer whose output is to be rotated, y Q, needs W <- Q^T W and b <- b Q. */
#include "rotate.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gemm.h"
#include "ggml_types.h"
#include "gguf.h"
#include "util.h"

/* One transform: an rq_orth, or a dense matrix the caller gave (DFRot's R1). */
typedef struct {
    rq_orth *q;
    const float *dense; /* [n, n] */
    int64_t n;
} xform;

static void right(const xform *t, float *x, int64_t rows) {
    if (t->q) {
        rq_orth_apply(t->q, x, rows);
        return;
    }
    float *tmp = rq_malloc((size_t)(rows * t->n) * sizeof *tmp);
    rq_sgemm(CblasNoTrans, CblasNoTrans, (int)rows, (int)t->n, (int)t->n, 1.0f, x, (int)t->n, t->dense, (int)t->n, 0.0f,
             tmp, (int)t->n);
    memcpy(x, tmp, (size_t)(rows * t->n) * sizeof *tmp);
    free(tmp);
}

static void transpose(const float *a, float *b, int64_t rows, int64_t cols) {
    enum { T = 32 };
    for (int64_t i0 = 0; i0 < rows; i0 += T)
        for (int64_t j0 = 0; j0 < cols; j0 += T)
            for (int64_t i = i0; i < i0 + T && i < rows; i++)
                for (int64_t j = j0; j < j0 + T && j < cols; j++)
                    b[j * rows + i] = a[i * cols + j];
}

/* w[rows, cols] <- Q^T w, with Q of order rows: (Q^T w)^T = w^T Q. */
static void left_t(const xform *t, float *w, int64_t rows, int64_t cols) {
    float *wt = rq_malloc((size_t)(rows * cols) * sizeof *wt);
    transpose(w, wt, rows, cols);
    right(t, wt, cols);
    transpose(wt, w, cols, rows);
    free(wt);
}

static void scale_cols(float *w, int64_t rows, int64_t cols, const float *g) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] *= g[c];
}

typedef struct {
    const rq_gguf *g;
    rq_gguf_writer *w;
    float **bufs;
    int n_bufs;
} out_file;

static float *keep(out_file *o, float *p) {
    o->bufs = rq_realloc(o->bufs, (size_t)(o->n_bufs + 1) * sizeof *o->bufs);
    o->bufs[o->n_bufs++] = p;
    return p;
}

static int add(out_file *o, const char *name, int n_dims, const int64_t *ne, const float *data) {
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++)
        nel *= ne[d];
    return rq_gguf_add_tensor(o->w, name, RQ_GGML_F32, n_dims, ne, data, (size_t)nel * sizeof(float));
}

static const char *kind_name(int k) { return k == RQ_ROT_NONE ? "none" : rq_orth_kind_name((rq_orth_kind)k); }

static int check_opts(const rq_rot_opts *o) {
    if (o->seed > (uint64_t)INT64_MAX) /* stored as an integer every GGUF reader takes back */
        return rq_fail("rotate: seed %llu is too large; use 0 .. 2^63-1", (unsigned long long)o->seed);
    const int *k[4] = {&o->r1, &o->r2, &o->r3, &o->r4};
    for (int i = 0; i < 4; i++)
        if (*k[i] != RQ_ROT_NONE && (*k[i] < RQ_ORTH_HADAMARD || *k[i] > RQ_ORTH_RO))
            return rq_fail("rotate: R%d = %d is not a rotation kind", i + 1, *k[i]);
    return 0;
}

/* The tensor's block index and the name after "blk.N.", or -1. */
static int blk_of(const char *name, const char **rest) {
    int l, off = 0;
    if (sscanf(name, "blk.%d.%n", &l, &off) != 1 || off == 0) return -1;
    *rest = name + off;
    return l;
}

int rq_rotate_file(const char *in, const char *out, const rq_rot_opts *o, bool verbose) {
    if (check_opts(o)) return -1;
    rq_gguf *g;
    struct stat st;
    if (stat(in, &st) == 0 && S_ISDIR(st.st_mode))
        return rq_fail("rotate: %s is a folder; rotation reads GGUF files only (Hugging Face folders are not supported "
                       "here yet)",
                       in);
    if (rq_gguf_open(in, &g)) return -1;
    rq_config c;
    int rc = -1;
    xform r1 = {0}, r2 = {0}, r4 = {0};
    out_file of = {g, NULL, NULL, 0};
    float *gout = NULL;
    if (rq_config_from_gguf(g, &c)) goto done;
    if (rq_gguf_find(g, "repliq.rot.r1") || rq_gguf_find(g, "repliq.recipe")) {
        rq_fail("%s is already rotated or quantized by repliq; rotate the original model, then quantize", in);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type == RQ_GGML_RQ_PACKED) {
            rq_fail("%s: tensor '%s' is packed by repliq; rotate before quantizing", in, g->tensors[i].name);
            goto done;
        }
    const int64_t E = c.n_embd, F = c.n_ff, hd = c.head_dim, V = c.n_vocab;
    bool do_r1 = o->r1_matrix || o->r1 != RQ_ROT_NONE;
    if (o->r1_matrix)
        r1 = (xform){NULL, o->r1_matrix, E};
    else if (do_r1 && !(r1.q = rq_orth_new(E, (rq_orth_kind)o->r1, rq_rot_stage_seed(o->seed, 1))))
        goto fail_ctx;
    if (o->r2 != RQ_ROT_NONE && !(r2.q = rq_orth_new(hd, (rq_orth_kind)o->r2, rq_rot_stage_seed(o->seed, 2))))
        goto fail_ctx;
    if (o->r4 != RQ_ROT_NONE && !(r4.q = rq_orth_new(F, (rq_orth_kind)o->r4, rq_rot_stage_seed(o->seed, 4))))
        goto fail_ctx;
    if (verbose) {
        if (r1.q) fprintf(stderr, "rotate: R1 (%lld): %s\n", (long long)E, rq_orth_describe(r1.q));
        if (o->r1_matrix) fprintf(stderr, "rotate: R1 (%lld): given matrix\n", (long long)E);
        if (r2.q) fprintf(stderr, "rotate: R2 (%lld): %s\n", (long long)hd, rq_orth_describe(r2.q));
        if (r4.q)
            fprintf(stderr, "rotate: R4 (%lld): %s (online, folded into ffn_down)\n", (long long)F,
                    rq_orth_describe(r4.q));
    }

    of.w = rq_gguf_writer_new();
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "general.file_type")) rq_gguf_copy_kv(of.w, &g->kv[i]);
    rq_gguf_set_u32(of.w, "general.file_type", 0); /* ALL_F32 */
    rq_gguf_set_str(of.w, "repliq.rot.r1", o->r1_matrix ? (o->r1_name ? o->r1_name : "given") : kind_name(o->r1));
    if (o->info) rq_gguf_set_str(of.w, "repliq.rot.info", o->info);
    rq_gguf_set_str(of.w, "repliq.rot.r2", kind_name(o->r2));
    rq_gguf_set_str(of.w, "repliq.rot.r3", kind_name(o->r3));
    rq_gguf_set_str(of.w, "repliq.rot.r4", kind_name(o->r4));
    rq_gguf_set_u64(of.w, "repliq.rot.seed", o->seed);

    if (do_r1 && !(gout = rq_tensor_load_f32(g, "output_norm.weight", E, 1))) goto done;
    double t0 = rq_time();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const rq_gguf_tensor *t = &g->tensors[i];
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        float *x = keep(&of, rq_malloc((size_t)nel * sizeof(float)));
        if (rq_ggml_to_float(t->type, t->data, x, nel)) {
            rq_fail_ctx("tensor '%s'", t->name);
            goto done;
        }
        rq_gguf_release(g, t);
        const char *rest = NULL;
        int l = blk_of(t->name, &rest);
        int64_t rows = t->n_dims > 1 ? t->ne[1] : 1, cols = t->ne[0];
        bool norm = l >= 0 && (!strcmp(rest, "attn_norm.weight") || !strcmp(rest, "ffn_norm.weight"));
        if (do_r1 && (norm || !strcmp(t->name, "output_norm.weight"))) {
            for (int64_t j = 0; j < nel; j++)
                x[j] = 1.0f; /* folded into the next linear layers */
        } else if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) {
            if (do_r1) {
                if (!strcmp(t->name, "output.weight")) scale_cols(x, rows, cols, gout);
                right(&r1, x, rows);
            }
        } else if (l >= 0 && strstr(rest, ".weight") && rows > 1) {
            bool reads_resid = !strcmp(rest, "attn_q.weight") || !strcmp(rest, "attn_k.weight") ||
                               !strcmp(rest, "attn_v.weight") || !strcmp(rest, "ffn_gate.weight") ||
                               !strcmp(rest, "ffn_up.weight");
            if (reads_resid && do_r1) {
                char nn[96];
                snprintf(nn, sizeof nn, "blk.%d.%s", l, rest[0] == 'a' ? "attn_norm.weight" : "ffn_norm.weight");
                float *gam = rq_tensor_load_f32(g, nn, E, 1);
                if (!gam) goto done;
                scale_cols(x, rows, cols, gam);
                free(gam);
                right(&r1, x, rows);
            }
            if (!strcmp(rest, "attn_v.weight") && r2.q) /* each head's hd x E slice <- Q2^T slice */
                for (int64_t h = 0; h < rows / hd; h++)
                    left_t(&r2, x + h * hd * cols, hd, cols);
            if (!strcmp(rest, "attn_output.weight")) {
                if (r2.q) right(&r2, x, rows * cols / hd); /* each head's columns <- columns Q2 */
                if (do_r1) left_t(&r1, x, rows, cols);
            }
            if (!strcmp(rest, "ffn_down.weight")) {
                if (r4.q) right(&r4, x, rows); /* reads g Q4 */
                if (do_r1) left_t(&r1, x, rows, cols);
            }
        } else if (l >= 0 && !strcmp(rest, "attn_v.bias") && r2.q) {
            right(&r2, x, nel / hd);
        }
        if (add(&of, t->name, t->n_dims, t->ne, x)) goto done;
        if (verbose) rq_progress("rotating tensors", (int64_t)i + 1, (int64_t)g->n_tensors, t0);
    }
    if (c.tied_output && do_r1) { /* the output matrix now differs from the embeddings: untie */
        float *x = keep(&of, rq_tensor_load_f32(g, "token_embd.weight", E, V));
        if (!x) goto done;
        scale_cols(x, V, E, gout);
        right(&r1, x, V);
        int64_t ne[2] = {E, V};
        if (add(&of, "output.weight", 2, ne, x)) goto done;
    }
    if (rq_gguf_write(of.w, out)) goto done;
    rc = 0;
    goto done;
fail_ctx:
    rq_fail_ctx("rotate %s", in);
done:
    if (of.w) rq_gguf_writer_free(of.w);
    for (int i = 0; i < of.n_bufs; i++)
        free(of.bufs[i]);
    free(of.bufs);
    free(gout);
    rq_orth_free(r1.q);
    rq_orth_free(r2.q);
    rq_orth_free(r4.q);
    rq_gguf_close(g);
    return rc;
}
