/* hadamard.c - Hadamard matrices built by construction (Sylvester, Paley I and II,
 * Kronecker products), their fast transform, and the orthogonal transforms for
 * rotations (Hadamard, random-sign Hadamard, random orthogonal, fallback). */
#include "hadamard.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "grid.h"
#include "util.h"

/* ---- constructions ---- */

/* One Paley matrix over GF(q). Only prime q: prime powers such as 27 would need
 * GF(p^k) arithmetic, and the orders the supported models use are reached with
 * primes and Kronecker products. */
typedef struct {
    int type; /* 1: Paley I, order q + 1 (q = 3 mod 4); 2: Paley II, order 2(q + 1) (q = 1 mod 4) */
    int64_t q;
} paley;

static bool is_prime(int64_t q) {
    if (q < 2) return false;
    for (int64_t d = 2; d * d <= q; d++)
        if (q % d == 0) return false;
    return true;
}

static int64_t paley_order(paley p) { return p.type == 1 ? p.q + 1 : 2 * (p.q + 1); }

/* The Paley construction of order m, if there is one (Paley I preferred). */
static bool paley_for(int64_t m, paley *p) {
    if (m >= 4 && is_prime(m - 1) && (m - 1) % 4 == 3) {
        *p = (paley){1, m - 1};
        return true;
    }
    if (m >= 12 && m % 2 == 0 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) {
        *p = (paley){2, m / 2 - 1};
        return true;
    }
    return false;
}

/* The dense factor of order m: one Paley matrix, or the Kronecker product of two
 * (f[1].q == 0 when single). */
static bool dense_for(int64_t m, paley f[2]) {
    f[1] = (paley){0, 0};
    if (paley_for(m, &f[0])) return true;
    for (int64_t a = 4; a * a <= m; a += 4)
        if (m % a == 0 && paley_for(a, &f[0]) && paley_for(m / a, &f[1])) return true;
    return false;
}

/* Fill out[o, o] (o = paley_order(p)) with +-1 entries. chi is the quadratic
 * character of GF(q); the Jacobsthal matrix Q[i][j] = chi(j - i) has row sums 0
 * and Q Q^T = q I - J, which both constructions rely on. */
static void build_paley(paley p, int8_t *out) {
    int64_t q = p.q, c = q + 1; /* c: order of the conference matrix */
    int8_t *chi = rq_malloc((size_t)q), *conf = rq_malloc((size_t)(c * c));
    memset(chi, -1, (size_t)q);
    chi[0] = 0;
    for (int64_t x = 1; x <= q / 2; x++)
        chi[x * x % q] = 1;
    /* conference matrix C = [[0, 1^T], [s 1, Q]], s = -1 (Paley I, C skew) or +1
     * (Paley II, C symmetric); either way C C^T = q I. */
    conf[0] = 0;
    for (int64_t i = 1; i < c; i++) {
        conf[i] = 1;
        conf[i * c] = p.type == 1 ? -1 : 1;
        for (int64_t j = 1; j < c; j++)
            conf[i * c + j] = chi[((j - i) % q + q) % q];
    }
    if (p.type == 1) { /* H = I + C: (I + C)(I + C)^T = I + C C^T = (q + 1) I as C is skew */
        for (int64_t i = 0; i < c; i++)
            for (int64_t j = 0; j < c; j++)
                out[i * c + j] = (int8_t)(conf[i * c + j] + (i == j));
    } else { /* H = C (x) [[1, 1], [1, -1]] + I (x) [[1, -1], [-1, -1]] */
        int64_t o = 2 * c;
        for (int64_t i = 0; i < c; i++)
            for (int64_t j = 0; j < c; j++) {
                int8_t v = conf[i * c + j], *b = out + 2 * i * o + 2 * j;
                if (v == 0)
                    b[0] = 1, b[1] = -1, b[o] = -1, b[o + 1] = -1;
                else
                    b[0] = v, b[1] = v, b[o] = v, b[o + 1] = (int8_t)-v;
            }
    }
    free(chi);
    free(conf);
}

/* Append to h->desc; vsnprintf truncates an over-long description safely. */
__attribute__((format(printf, 2, 3))) static void desc_add(rq_hadamard *h, const char *fmt, ...) {
    size_t len = strlen(h->desc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->desc + len, sizeof h->desc - len, fmt, ap);
    va_end(ap);
}

static void desc_paley(rq_hadamard *h, paley p) {
    desc_add(h, "Paley %s (q = %lld)", p.type == 1 ? "I" : "II", (long long)p.q);
}

int rq_hadamard_new(int64_t n, rq_hadamard *h) {
    memset(h, 0, sizeof *h);
    if (n < 1) return rq_fail("Hadamard order %lld: the order must be at least 1", (long long)n);
    if (n > 2 && n % 4 != 0)
        return rq_fail("no Hadamard matrix of order %lld: one exists only for orders 1, 2 and multiples of 4",
                       (long long)n);
    int64_t pow2 = 1;
    while (n % (2 * pow2) == 0)
        pow2 *= 2;
    /* The largest power of two first keeps the dense factor, and so the O(n m)
     * part of the transform, as small as possible. A Sylvester factor inside m is
     * never needed: it would merge into pow2. */
    paley f[2];
    for (; pow2 >= 1; pow2 /= 2) {
        int64_t m = n / pow2;
        if (m == 1 || dense_for(m, f)) break;
    }
    if (pow2 < 1)
        return rq_fail("no Hadamard matrix of order %lld is constructed here (n = 2^k x m needs m = 1, q + 1 with q "
                       "prime = 3 mod 4, 2(q + 1) with q prime = 1 mod 4, or a product of two such orders); "
                       "rq_orth takes its randomized fallback for this order",
                       (long long)n);
    h->n = n;
    h->pow2 = pow2;
    h->m = n / pow2;
    int64_t m = h->m;
    if (m == 1) {
        int k = 0;
        while ((INT64_C(1) << k) < n)
            k++;
        snprintf(h->desc, sizeof h->desc, "%lld: Sylvester (2^%d)", (long long)n, k);
        return 0;
    }
    h->base = rq_malloc((size_t)(m * m));
    int64_t a = paley_order(f[0]), b = f[1].q ? paley_order(f[1]) : 1;
    desc_add(h, "%lld", (long long)n);
    if (pow2 > 1) desc_add(h, " = %lld x %lld, %lld", (long long)pow2, (long long)m, (long long)m);
    if (b > 1) desc_add(h, " = %lld (x) %lld", (long long)a, (long long)b);
    desc_add(h, ": ");
    desc_paley(h, f[0]);
    if (b == 1) {
        build_paley(f[0], h->base);
        return 0;
    }
    desc_add(h, " (x) ");
    desc_paley(h, f[1]);
    int8_t *A = rq_malloc((size_t)(a * a)), *B = rq_malloc((size_t)(b * b));
    build_paley(f[0], A);
    build_paley(f[1], B);
    for (int64_t i = 0; i < a; i++) /* H_m[(i b + j), (k b + l)] = A[i][k] B[j][l] */
        for (int64_t j = 0; j < b; j++)
            for (int64_t k = 0; k < a; k++)
                for (int64_t l = 0; l < b; l++)
                    h->base[(i * b + j) * m + k * b + l] = (int8_t)(A[i * a + k] * B[j * b + l]);
    free(A);
    free(B);
    return 0;
}

void rq_hadamard_free(rq_hadamard *h) {
    if (!h) return;
    free(h->base);
    memset(h, 0, sizeof *h);
}

/* ---- the Kronecker transform K = B (x) H_p ---- */

/* Rows are viewed as [m, p] (index i p + j); B is the m x m factor, int8 for a
 * Hadamard matrix or float for the fallback's O_m, both NULL when m == 1. */
typedef struct {
    int64_t p, m;
    const int8_t *b8;
    const float *bf;
} kron;

static float kron_coef(const kron *k, int64_t i, int64_t j) {
    if (k->b8) return k->b8[i * k->m + j];
    return k->bf ? k->bf[i * k->m + j] : 1.0f;
}

/* In place x <- x H_p for natural-order Sylvester H_p[j][l] = (-1)^popcount(j & l). */
static void fwht(float *x, int64_t p) {
    for (int64_t h = 1; h < p; h *= 2)
        for (int64_t i = 0; i < p; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

/* x[r] <- scale * x[r] K (or K^T): H_p is symmetric, so only B is transposed. */
static void kron_apply(const kron *k, bool t, float scale, float *x, int64_t rows) {
    int64_t p = k->p, m = k->m, n = p * m;
    float *tmp = m > 1 ? rq_malloc((size_t)n * sizeof(float)) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        for (int64_t i = 0; i < m; i++)
            fwht(xr + i * p, p);
        if (m > 1) { /* out block c = sum_i B[i][c] (x block i): p-long axpys, O(n m) */
            memset(tmp, 0, (size_t)n * sizeof(float));
            for (int64_t c = 0; c < m; c++) {
                float *o = tmp + c * p;
                for (int64_t i = 0; i < m; i++) {
                    float w = t ? kron_coef(k, c, i) : kron_coef(k, i, c);
                    const float *s = xr + i * p;
                    for (int64_t j = 0; j < p; j++)
                        o[j] += w * s[j];
                }
            }
            memcpy(xr, tmp, (size_t)n * sizeof(float));
        }
        for (int64_t j = 0; j < n; j++)
            xr[j] *= scale;
    }
    free(tmp);
}

/* out[n, n] = K, unscaled, entry by entry (an independent check on kron_apply). */
static void kron_dense(const kron *k, float *out) {
    int64_t p = k->p, m = k->m, n = p * m;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < p; j++) {
            float *row = out + (i * p + j) * n;
            for (int64_t c = 0; c < m; c++) {
                float w = kron_coef(k, i, c);
                for (int64_t l = 0; l < p; l++)
                    row[c * p + l] = __builtin_parityll((unsigned long long)(j & l)) ? -w : w;
            }
        }
}

static kron hadamard_kron(const rq_hadamard *h) { return (kron){h->pow2, h->m, h->base, NULL}; }

void rq_hadamard_dense(const rq_hadamard *h, float *out) {
    kron k = hadamard_kron(h);
    kron_dense(&k, out);
}

void rq_hadamard_apply(const rq_hadamard *h, float *x, int64_t rows) {
    kron k = hadamard_kron(h);
    kron_apply(&k, false, (float)(1.0 / sqrt((double)h->n)), x, rows);
}

void rq_hadamard_apply_t(const rq_hadamard *h, float *x, int64_t rows) {
    kron k = hadamard_kron(h);
    kron_apply(&k, true, (float)(1.0 / sqrt((double)h->n)), x, rows);
}

/* ---- orthogonal transforms ---- */

/* Stream tags, so the signs and the Gaussian matrix of one seed are independent. */
#define TAG_SIGNS 0x5349474e53ull /* "SIGNS" */
#define TAG_QR 0x4741555353ull    /* "GAUSS" */

struct rq_orth {
    int64_t n;
    rq_orth_kind kind;
    bool fallback;
    rq_hadamard h;   /* Hadamard kinds with a construction */
    float *sign;     /* [n] +-1: RH and the fallback; NULL for plain Hadamard */
    float *o;        /* RO: [n, n] Q; fallback: [m, m] O_m (row-major) */
    int64_t pow2, m; /* the fallback's split */
    char desc[256];
};

static double gauss(rq_rng *r) {
    double u = rq_rng_uniform(r) + 0x1p-25, v = rq_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* q[m, m] (row-major) <- a Haar-distributed orthogonal matrix: QR of a Gaussian
 * matrix, with column j times sign(R_jj) so that the factorization is unique and
 * Q does not inherit the sign convention of Householder QR. */
static int random_orthogonal(int64_t m, uint64_t seed, float *q) {
    lapack_int lm = (lapack_int)m;
    float *tau = rq_malloc((size_t)m * sizeof(float)), *d = rq_malloc((size_t)m * sizeof(float));
    for (int64_t j = 0; j < m; j++) { /* column-major; each column has its own stream */
        rq_rng r;
        rq_rng_seed(&r, seed ^ TAG_QR, (uint64_t)j);
        for (int64_t i = 0; i < m; i++)
            q[i + j * m] = (float)gauss(&r);
    }
    rq_blas_single(); /* LAPACK on one OpenBLAS thread: the same bits at any -t */
    lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, lm, lm, q, lm, tau);
    for (int64_t j = 0; info == 0 && j < m; j++)
        d[j] = q[j + j * m] < 0.0f ? -1.0f : 1.0f;
    if (info == 0) info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, lm, lm, lm, q, lm, tau);
    free(tau);
    if (info != 0) {
        free(d);
        return rq_fail("random orthogonal matrix of order %lld: LAPACK QR failed (info %d)", (long long)m, (int)info);
    }
    for (int64_t i = 0; i < m; i++) { /* to row-major, in place: swap across the diagonal */
        q[i + i * m] *= d[i];
        for (int64_t j = i + 1; j < m; j++) {
            float a = q[i + j * m], b = q[j + i * m]; /* Q(i, j), Q(j, i) */
            q[i * m + j] = a * d[j];
            q[j * m + i] = b * d[i];
        }
    }
    free(d);
    return 0;
}

const char *rq_orth_kind_name(rq_orth_kind k) {
    switch (k) {
    case RQ_ORTH_HADAMARD:
        return "hadamard";
    case RQ_ORTH_RH:
        return "rh";
    case RQ_ORTH_RO:
        return "ro";
    }
    return "unknown";
}

int rq_orth_kind_parse(const char *s) {
    for (int k = RQ_ORTH_HADAMARD; k <= RQ_ORTH_RO; k++)
        if (s && strcmp(s, rq_orth_kind_name((rq_orth_kind)k)) == 0) return k;
    return -1;
}

rq_orth *rq_orth_new(int64_t n, rq_orth_kind kind, uint64_t seed) {
    if (n < 1) {
        rq_fail("orthogonal transform of order %lld: the order must be at least 1", (long long)n);
        return NULL;
    }
    if (kind != RQ_ORTH_HADAMARD && kind != RQ_ORTH_RH && kind != RQ_ORTH_RO) {
        rq_fail("orthogonal transform kind %d is unknown: use hadamard, rh or ro", (int)kind);
        return NULL;
    }
    rq_orth *q = rq_calloc(1, sizeof *q);
    q->n = n;
    q->kind = kind;
    const char *name = rq_orth_kind_name(kind);
    if (kind == RQ_ORTH_RO) {
        q->o = rq_malloc((size_t)(n * n) * sizeof(float));
        if (random_orthogonal(n, seed, q->o) != 0) {
            rq_orth_free(q);
            return NULL;
        }
        snprintf(q->desc, sizeof q->desc, "ro (seed %llu): random orthogonal %lld x %lld from QR",
                 (unsigned long long)seed, (long long)n, (long long)n);
        return q;
    }
    bool have = rq_hadamard_new(n, &q->h) == 0;
    if (kind == RQ_ORTH_RH || !have) {
        rq_rng r;
        rq_rng_seed(&r, seed ^ TAG_SIGNS, 0);
        q->sign = rq_malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            q->sign[i] = (rq_rng_next(&r) >> 63) ? -1.0f : 1.0f;
    }
    if (have) {
        if (kind == RQ_ORTH_HADAMARD)
            snprintf(q->desc, sizeof q->desc, "hadamard: %s", q->h.desc);
        else
            snprintf(q->desc, sizeof q->desc, "rh (seed %llu): random signs, %s", (unsigned long long)seed, q->h.desc);
        return q;
    }
    /* No Hadamard matrix of this order: keep the fast power-of-two part and make
     * the rest random orthogonal, so the transform still spreads outliers. */
    q->fallback = true;
    q->pow2 = 1;
    while (n % (2 * q->pow2) == 0)
        q->pow2 *= 2;
    q->m = n / q->pow2;
    q->o = rq_malloc((size_t)(q->m * q->m) * sizeof(float));
    if (random_orthogonal(q->m, seed, q->o) != 0) {
        rq_orth_free(q);
        return NULL;
    }
    snprintf(q->desc, sizeof q->desc,
             "%s (seed %llu): fallback: randomized block-orthogonal (%lld = %lld x %lld: random signs, random "
             "orthogonal %lld from QR (x) Sylvester %lld; no Hadamard matrix of order %lld is constructed)",
             name, (unsigned long long)seed, (long long)n, (long long)q->pow2, (long long)q->m, (long long)q->m,
             (long long)q->pow2, (long long)n);
    return q;
}

void rq_orth_free(rq_orth *q) {
    if (!q) return;
    rq_hadamard_free(&q->h);
    free(q->sign);
    free(q->o);
    free(q);
}

int64_t rq_orth_n(const rq_orth *q) { return q->n; }
bool rq_orth_fallback(const rq_orth *q) { return q->fallback; }
const char *rq_orth_describe(const rq_orth *q) { return q->desc; }

/* The Kronecker part of a Hadamard-kind transform and its scale. */
static kron orth_kron(const rq_orth *q, float *scale) {
    if (q->fallback) {
        *scale = (float)(1.0 / sqrt((double)q->pow2));
        return (kron){q->pow2, q->m, NULL, q->o};
    }
    *scale = (float)(1.0 / sqrt((double)q->n));
    return hadamard_kron(&q->h);
}

static void scale_by_signs(const float *s, float *x, int64_t n, int64_t rows) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            x[r * n + j] *= s[j];
}

/* RO: x <- x Q (or Q^T) by GEMM, a bounded block of rows at a time. */
static void gemm_rows(const rq_orth *q, bool t, float *x, int64_t rows) {
    int64_t n = q->n, chunk = (INT64_C(1) << 22) / n;
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *tmp = rq_malloc((size_t)(chunk * n) * sizeof(float));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int nr = (int)(rows - r0 < chunk ? rows - r0 : chunk);
        rq_sgemm(CblasNoTrans, t ? CblasTrans : CblasNoTrans, nr, (int)n, (int)n, 1.0f, x + r0 * n, (int)n, q->o,
                 (int)n, 0.0f, tmp, (int)n);
        memcpy(x + r0 * n, tmp, (size_t)(nr * n) * sizeof(float));
    }
    free(tmp);
}

/* Q = diag(s) K: x Q = (x o s) K, and x Q^T = (x K^T) o s. */
void rq_orth_apply(const rq_orth *q, float *x, int64_t rows) {
    if (rows < 1) return;
    if (q->kind == RQ_ORTH_RO) {
        gemm_rows(q, false, x, rows);
        return;
    }
    float scale;
    kron k = orth_kron(q, &scale);
    if (q->sign) scale_by_signs(q->sign, x, q->n, rows);
    kron_apply(&k, false, scale, x, rows);
}

void rq_orth_apply_t(const rq_orth *q, float *x, int64_t rows) {
    if (rows < 1) return;
    if (q->kind == RQ_ORTH_RO) {
        gemm_rows(q, true, x, rows);
        return;
    }
    float scale;
    kron k = orth_kron(q, &scale);
    kron_apply(&k, true, scale, x, rows);
    if (q->sign) scale_by_signs(q->sign, x, q->n, rows);
}

void rq_orth_dense(const rq_orth *q, float *out) {
    int64_t n = q->n;
    if (q->kind == RQ_ORTH_RO) {
        memcpy(out, q->o, (size_t)(n * n) * sizeof(float));
        return;
    }
    float scale;
    kron k = orth_kron(q, &scale);
    kron_dense(&k, out);
    for (int64_t r = 0; r < n; r++) {
        float w = q->sign ? scale * q->sign[r] : scale;
        for (int64_t c = 0; c < n; c++)
            out[r * n + c] *= w;
    }
}
