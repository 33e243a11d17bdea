/* grid.c - the uniform grid: fitting a group's scale (and minimum), rounding a
 * value to a code, decoding a code, and the quantized tensor container. */
#include "grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

rq_grid rq_grid_default(void) {
    rq_grid g = {0};
    g.bits = 4;
    g.sym = false;
    g.group = 128;
    g.mse = false;
    g.mse_min = 0.5f;
    g.mse_steps = 20;
    g.round = RQ_ROUND_NEAREST;
    g.salient_frac = 0.05f;
    return g;
}

int rq_grid_check(const rq_grid *g) {
    if (g->bits < 1 || g->bits > 8) return rq_fail("bits = %d is out of range (1..8)", g->bits);
    if (g->group < 0) return rq_fail("group = %lld must be 0 (one group per row) or positive", (long long)g->group);
    if (!(g->mse_min > 0.0f && g->mse_min <= 1.0f)) return rq_fail("mse_min = %g must be in (0, 1]", g->mse_min);
    if (g->mse_steps < 1) return rq_fail("mse_steps = %d must be at least 1", g->mse_steps);
    if (!(g->offset >= -0.5f && g->offset <= 0.5f)) return rq_fail("offset = %g must be in [-0.5, 0.5]", g->offset);
    if (!(g->noise >= 0.0f)) return rq_fail("noise = %g must be >= 0", g->noise);
    if (g->binres && g->bits != 1) return rq_fail("binres needs bits = 1 (got %d)", g->bits);
    if (g->binres && !(g->salient_frac > 0.0f && g->salient_frac < 1.0f))
        return rq_fail("salient_frac = %g must be in (0, 1)", g->salient_frac);
    return 0;
}

void rq_rng_seed(rq_rng *r, uint64_t seed, uint64_t stream) {
    r->s = seed ^ (stream * 0x9E3779B97F4A7C15ull);
    rq_rng_next(r);
}

uint64_t rq_rng_next(rq_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rq_rng_uniform(rq_rng *r) { return (float)(rq_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

void rq_qtensor_alloc(rq_qtensor *t, const rq_grid *g, int64_t rows, int64_t cols, int64_t n_sal) {
    memset(t, 0, sizeof *t);
    t->grid = *g;
    t->rows = rows;
    t->cols = cols;
    t->group = g->group > 0 && g->group < cols ? g->group : cols;
    if (t->group < 1) t->group = 1; /* an empty row still has a well-defined layout */
    t->n_groups = (cols + t->group - 1) / t->group;
    t->q = rq_calloc((size_t)(rows * cols), 1);
    t->scale = rq_calloc((size_t)(rows * t->n_groups), sizeof(uint16_t));
    if (!g->sym) t->min = rq_calloc((size_t)(rows * t->n_groups), sizeof(uint16_t));
    t->n_sal = n_sal;
    if (n_sal > 0) {
        t->sal_cols = rq_calloc((size_t)n_sal, sizeof(int32_t));
        t->rq = rq_calloc((size_t)(rows * n_sal), 1);
        t->rscale = rq_calloc((size_t)rows, sizeof(uint16_t));
    }
}

void rq_qtensor_free(rq_qtensor *t) {
    if (!t) return;
    free(t->q);
    free(t->scale);
    free(t->min);
    free(t->sal_cols);
    free(t->rq);
    free(t->rscale);
    memset(t, 0, sizeof *t);
}

static float half_levels(int bits) { return 0.5f * (float)((1 << bits) - 1); }

float rq_grid_value(const rq_grid *g, float scale, float min, int q) {
    if (g->sym) return scale * ((float)q - half_levels(g->bits) + g->offset);
    return min + scale * ((float)q + g->offset);
}

static int clamp_code(float x, int maxq) {
    if (!(x > 0.0f)) return 0; /* also NaN */
    if (x >= (float)maxq) return maxq;
    return (int)x;
}

int rq_grid_code(const rq_grid *g, float scale, float min, float w, rq_rng *rng) {
    int maxq = (1 << g->bits) - 1;
    if (scale == 0.0f) return g->sym ? (maxq + 1) / 2 : 0;
    float x = g->sym ? w / scale + half_levels(g->bits) - g->offset : (w - min) / scale - g->offset;
    if (g->noise > 0.0f) x += g->noise * (rq_rng_uniform(rng) - 0.5f);
    if (g->round == RQ_ROUND_STOCHASTIC) return clamp_code(floorf(x + rq_rng_uniform(rng)), maxq);
    return clamp_code(floorf(x + 0.5f), maxq);
}

/* Squared error of rounding w to the nearest level under (scale, min). */
static double group_err(const rq_grid *g, const float *w, const float *imp, int64_t n, float s, float m) {
    rq_grid near = *g;
    near.round = RQ_ROUND_NEAREST;
    near.noise = 0.0f;
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = rq_grid_value(g, s, m, rq_grid_code(&near, s, m, w[i], NULL)) - w[i];
        e += (imp ? imp[i] : 1.0) * (double)d * d;
    }
    return e;
}

/* Parameters for the range shrunk by ratio r, rounded to f16. */
static void params_at(const rq_grid *g, const float *w, const float *imp, int64_t n, float r, uint16_t *s,
                      uint16_t *m) {
    int maxq = (1 << g->bits) - 1;
    if (g->bits == 1) {
        /* two levels: the squared-error optimum is the (weighted) mean magnitude for
         * sign * scale, and one Lloyd step (means either side of the mean) with a min */
        double sw = 0, sa = 0, mu = 0;
        for (int64_t i = 0; i < n; i++) {
            double wi = imp ? imp[i] : 1.0;
            sw += wi;
            sa += wi * fabs(w[i]);
            mu += wi * w[i];
        }
        if (sw <= 0) sw = 1;
        if (g->sym) {
            *s = rq_fp32_to_fp16((float)(2.0 * r * sa / sw));
            *m = 0;
            return;
        }
        mu /= sw;
        double lo = 0, hi = 0, wl = 0, wh = 0;
        for (int64_t i = 0; i < n; i++) {
            double wi = imp ? imp[i] : 1.0;
            if (w[i] < mu)
                lo += wi * w[i], wl += wi;
            else
                hi += wi * w[i], wh += wi;
        }
        lo = wl > 0 ? lo / wl : mu;
        hi = wh > 0 ? hi / wh : mu;
        double c = 0.5 * (lo + hi), half = 0.5 * (hi - lo) * r;
        *s = rq_fp32_to_fp16((float)(2.0 * half));
        *m = rq_fp32_to_fp16((float)(c - half));
        return;
    }
    float lo = 0.0f, hi = 0.0f;
    if (n > 0) lo = hi = w[0];
    for (int64_t i = 1; i < n; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    if (g->sym) {
        float a = fmaxf(fabsf(lo), fabsf(hi)) * r;
        *s = rq_fp32_to_fp16(a / half_levels(g->bits));
        *m = 0;
    } else {
        lo *= r;
        hi *= r;
        *s = rq_fp32_to_fp16((hi - lo) / (float)maxq);
        *m = rq_fp32_to_fp16(lo);
    }
}

void rq_grid_fit(const rq_grid *g, const float *w, const float *imp, int64_t n, uint16_t *scale, uint16_t *min) {
    params_at(g, w, imp, n, 1.0f, scale, min);
    if (!g->mse || g->mse_steps < 2) return;
    double best = group_err(g, w, imp, n, rq_fp16_to_fp32(*scale), rq_fp16_to_fp32(*min));
    for (int i = 1; i < g->mse_steps; i++) {
        float r = 1.0f - (float)i * (1.0f - g->mse_min) / (float)(g->mse_steps - 1);
        uint16_t s, m;
        params_at(g, w, imp, n, r, &s, &m);
        double e = group_err(g, w, imp, n, rq_fp16_to_fp32(s), rq_fp16_to_fp32(m));
        if (e < best) {
            best = e;
            *scale = s;
            *min = m;
        }
    }
}

void rq_qtensor_dequant(const rq_qtensor *t, float *out) {
    for (int64_t r = 0; r < t->rows; r++) {
        for (int64_t c = 0; c < t->cols; c++) {
            int64_t k = r * t->n_groups + c / t->group;
            float s = rq_fp16_to_fp32(t->scale[k]), m = t->min ? rq_fp16_to_fp32(t->min[k]) : 0.0f;
            out[r * t->cols + c] = rq_grid_value(&t->grid, s, m, t->q[r * t->cols + c]);
        }
        if (t->n_sal > 0) {
            float rs = rq_fp16_to_fp32(t->rscale[r]);
            for (int64_t j = 0; j < t->n_sal; j++)
                out[r * t->cols + t->sal_cols[j]] += t->rq[r * t->n_sal + j] ? rs : -rs;
        }
    }
}
