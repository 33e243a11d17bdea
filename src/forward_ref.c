/* forward_ref.c - the scalar reference forward pass: one token at a time with a
 * KV cache, plain loops, double accumulators. It defines what the batched GEMM
 * path in forward.c must compute, and is the decode path's starting point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "hadamard.h"
#include "util.h"

static void rmsnorm_ref(const float *x, const float *w, int dim, float eps, float *y) {
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / dim + eps);
    for (int i = 0; i < dim; i++)
        y[i] = (float)(x[i] * scale * w[i]);
}

static void rope_ref(float *v, int n_heads, int hd, int pos, float base, bool neox) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            double th = pos * pow(base, -2.0 * i / hd), c = cos(th), s = sin(th);
            float *x = v + (size_t)h * hd;
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            double x0 = x[a], x1 = x[b];
            x[a] = (float)(x0 * c - x1 * s);
            x[b] = (float)(x0 * s + x1 * c);
        }
}

/* x[0..n) <- x Q with a dense Q[n, n] (the online rotations' definition). */
static void rot_ref(const float *Q, float *x, int n, float *tmp) {
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += (double)x[i] * Q[(size_t)i * n + j];
        tmp[j] = (float)s;
    }
    memcpy(x, tmp, (size_t)n * sizeof *x);
}

/* The dense matrix of an online rotation, or NULL when there is none. */
static float *online_dense(int kind, int64_t n, uint64_t seed) {
    if (kind == RQ_ROT_NONE) return NULL;
    rq_orth *o = rq_orth_new(n, (rq_orth_kind)kind, seed);
    if (!o) return NULL;
    float *d = rq_malloc((size_t)(n * n) * sizeof *d);
    rq_orth_dense(o, d);
    rq_orth_free(o);
    return d;
}

int rq_forward_ref(const rq_model *m, const int32_t *tokens, int n, float *logits) {
    const rq_config *c = &m->cfg;
    int E = c->n_embd, hd = c->head_dim, Dq = c->n_head * hd, Dkv = c->n_head_kv * hd, F = c->n_ff;
    int group = c->n_head / c->n_head_kv;
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->n_vocab)
            return rq_fail("token %d at position %d is out of the vocabulary", tokens[t], t);
    float *x = rq_malloc(E * sizeof(float)), *h = rq_malloc(E * sizeof(float)), *q = rq_malloc(Dq * sizeof(float)),
          *att = rq_malloc(Dq * sizeof(float)), *g = rq_malloc(F * sizeof(float)), *u = rq_malloc(F * sizeof(float)),
          *tmp = rq_malloc((size_t)(E > F ? E : F) * sizeof(float)), *sc = rq_malloc((size_t)n * sizeof(float));
    float *kc = rq_malloc((size_t)c->n_layer * n * Dkv * sizeof(float));
    float *vc = rq_malloc((size_t)c->n_layer * n * Dkv * sizeof(float));
    float *q3 = online_dense(m->online.r3, hd, rq_rot_stage_seed(m->online.seed, 3));
    float *q4 = online_dense(m->online.r4, F, rq_rot_stage_seed(m->online.seed, 4));
    for (int t = 0; t < n; t++) {
        memcpy(x, m->tok_embd + (size_t)tokens[t] * E, E * sizeof(float));
        for (int l = 0; l < c->n_layer; l++) {
            const rq_layer *L = &m->layers[l];
            float *kt = kc + ((size_t)l * n + t) * Dkv, *vt = vc + ((size_t)l * n + t) * Dkv;
            rmsnorm_ref(x, L->attn_norm, E, c->norm_eps, h);
            rq_linear_ref(&L->q, h, 1, q);
            rq_linear_ref(&L->k, h, 1, kt);
            rq_linear_ref(&L->v, h, 1, vt);
            rope_ref(q, c->n_head, hd, t, c->rope_base, c->arch->rope_neox);
            rope_ref(kt, c->n_head_kv, hd, t, c->rope_base, c->arch->rope_neox);
            for (int hh = 0; q3 && hh < c->n_head; hh++)
                rot_ref(q3, q + (size_t)hh * hd, hd, tmp);
            for (int hh = 0; q3 && hh < c->n_head_kv; hh++)
                rot_ref(q3, kt + (size_t)hh * hd, hd, tmp);
            for (int hh = 0; hh < c->n_head; hh++) {
                const float *qh = q + (size_t)hh * hd;
                int kvh = hh / group;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    const float *ks = kc + ((size_t)l * n + s) * Dkv + (size_t)kvh * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += (double)qh[i] * ks[i];
                    sc[s] = (float)(d / sqrt((double)hd));
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                for (int s = 0; s <= t; s++)
                    sum += exp(sc[s] - mx);
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int s = 0; s <= t; s++)
                        o += exp(sc[s] - mx) / sum * vc[((size_t)l * n + s) * Dkv + (size_t)kvh * hd + i];
                    att[(size_t)hh * hd + i] = (float)o;
                }
            }
            rq_linear_ref(&L->o, att, 1, tmp);
            for (int i = 0; i < E; i++)
                x[i] += tmp[i];
            rmsnorm_ref(x, L->ffn_norm, E, c->norm_eps, h);
            for (int p = 0; p < rq_layer_ffn_paths(L); p++) {
                const rq_linear *gate, *up, *dn;
                rq_layer_ffn_path(L, p, &gate, &up, &dn);
                rq_linear_ref(gate, h, 1, g);
                rq_linear_ref(up, h, 1, u);
                for (int i = 0; i < F; i++)
                    g[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
                if (q4) rot_ref(q4, g, F, tmp);
                rq_linear_ref(dn, g, 1, tmp);
                for (int i = 0; i < E; i++)
                    x[i] += tmp[i];
            }
        }
        rmsnorm_ref(x, m->out_norm, E, c->norm_eps, h);
        rq_linear_ref(&m->output, h, 1, logits + (size_t)t * c->n_vocab);
    }
    free(x);
    free(h);
    free(q);
    free(att);
    free(g);
    free(u);
    free(tmp);
    free(sc);
    free(kc);
    free(vc);
    free(q3);
    free(q4);
    return 0;
}
