/* replica.c - the replicated layer's scalar reference: dequantization, the
 * replicated product, the collapse test and the packed layout of replica.h. */
#include "replica.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "hadamard.h"
#include "le.h"
#include "qformat.h"
#include "util.h"

static const char magic[4] = {'R', 'Q', 'R', '1'};

void rq_rep_alloc(rq_rep *t, int bits, int K, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    t->bits = bits;
    t->K = K;
    t->rows = rows;
    t->cols = cols;
    t->q = rq_calloc((size_t)(rows * cols), 1);
    t->a = rq_calloc((size_t)(K * rows), sizeof *t->a);
    t->b = rq_calloc((size_t)(K * cols), sizeof *t->b);
    t->o = rq_calloc((size_t)K, sizeof *t->o);
    t->rot_kind = rq_calloc((size_t)K, sizeof *t->rot_kind);
    t->rot_seed = rq_calloc((size_t)K, sizeof *t->rot_seed);
}

bool rq_rep_rotated(const rq_rep *t) {
    for (int k = 0; t->rot_kind && k < t->K; k++)
        if (t->rot_kind[k] != RQ_REP_ROT_NONE) return true;
    return false;
}

/* Replica k's input rotation U_k, NULL when it has none. Order cols >= 1 always
 * has a transform (hadamard.h's fallback), so failure is a bug. */
static rq_orth *replica_rot(const rq_rep *t, int k) {
    if (!t->rot_kind || t->rot_kind[k] == RQ_REP_ROT_NONE) return NULL;
    rq_orth *U = rq_orth_new(t->cols, RQ_ORTH_RH, t->rot_seed[k]);
    if (!U) {
        fprintf(stderr, "repliq: replicated tensor: no rotation of order %lld: %s\n", (long long)t->cols, rq_error());
        abort();
    }
    return U;
}

void rq_rep_free(rq_rep *t) {
    free(t->q);
    free(t->a);
    free(t->b);
    free(t->o);
    free(t->rot_kind);
    free(t->rot_seed);
    memset(t, 0, sizeof *t);
}

/* v[0..n) summed pairwise in place (n up to RQ_REP_MAX_K): adjacent pairs first,
 * then pairs of pairs, which is exact for n equal terms when n is a power of two. */
static float pairwise(float *v, int n) {
    while (n > 1) {
        int h = 0;
        for (int i = 0; i + 1 < n; i += 2)
            v[h++] = v[i] + v[i + 1];
        if (n & 1) v[h++] = v[n - 1];
        n = h;
    }
    return v[0];
}

static float centre(int bits) { return (float)((1 << bits) - 1) * 0.5f; }

/* Replica k's rows r0..r1 (with its rotation U, NULL for none) into out[r1 - r0, cols]. */
static void replica_rows(const rq_rep *t, int k, const rq_orth *U, int64_t r0, int64_t r1, const float *b, float *out) {
    const float m = centre(t->bits);
    for (int64_t r = r0; r < r1; r++) {
        float a = rq_fp16_to_fp32(t->a[(size_t)k * t->rows + r]);
        for (int64_t c = 0; c < t->cols; c++)
            out[(r - r0) * t->cols + c] = a * b[c] * ((float)t->q[r * t->cols + c] - m + t->o[k]);
    }
    if (U) rq_orth_apply_t(U, out, r1 - r0);
}

/* A block of rows of each replica's matrix (rotated where the replica is), then
 * their pairwise sums: memory K x 64 rows, not K whole matrices. */
void rq_rep_dequant(const rq_rep *t, float *out) {
    enum { ROWS = 64 };
    const size_t blk = (size_t)ROWS * (size_t)t->cols;
    float *each = rq_malloc((size_t)t->K * blk * sizeof *each), term[RQ_REP_MAX_K];
    float *b = rq_malloc((size_t)(t->K * t->cols) * sizeof *b);
    rq_fp16_to_fp32_n(t->b, t->K * t->cols, b);
    rq_orth **U = rq_calloc((size_t)t->K, sizeof *U);
    for (int k = 0; k < t->K; k++)
        U[k] = replica_rot(t, k);
    for (int64_t r0 = 0; r0 < t->rows; r0 += ROWS) {
        int64_t r1 = r0 + ROWS < t->rows ? r0 + ROWS : t->rows;
        size_t n = (size_t)(r1 - r0) * (size_t)t->cols;
        for (int k = 0; k < t->K; k++)
            replica_rows(t, k, U[k], r0, r1, b + (size_t)k * t->cols, each + (size_t)k * blk);
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < t->K; k++)
                term[k] = each[(size_t)k * blk + i];
            out[(size_t)r0 * t->cols + i] = pairwise(term, t->K);
        }
    }
    for (int k = 0; k < t->K; k++)
        rq_orth_free(U[k]);
    free(U);
    free(b);
    free(each);
}

void rq_rep_dequant_replica(const rq_rep *t, int k, float *out) {
    float *b = rq_malloc((size_t)t->cols * sizeof *b);
    rq_fp16_to_fp32_n(t->b + (size_t)k * t->cols, t->cols, b);
    rq_orth *U = replica_rot(t, k);
    replica_rows(t, k, U, 0, t->rows, b, out);
    rq_orth_free(U);
    free(b);
}

void rq_rep_matvec(const rq_rep *t, const float *x, float *y) {
    const float m = centre(t->bits);
    float *u = rq_malloc((size_t)t->cols * sizeof *u);
    float *yk = rq_malloc((size_t)(t->K * t->rows) * sizeof *yk);
    for (int k = 0; k < t->K; k++) {
        double su = 0;
        memcpy(u, x, (size_t)t->cols * sizeof *u);
        rq_orth *U = replica_rot(t, k);
        if (U) rq_orth_apply(U, u, 1); /* u = x U_k */
        rq_orth_free(U);
        for (int64_t c = 0; c < t->cols; c++) {
            u[c] *= rq_fp16_to_fp32(t->b[k * t->cols + c]);
            su += u[c];
        }
        for (int64_t r = 0; r < t->rows; r++) {
            const uint8_t *q = t->q + r * t->cols;
            double z = 0;
            for (int64_t c = 0; c < t->cols; c++)
                z += ((double)q[c] - m) * u[c];
            z += (double)t->o[k] * su;
            yk[k * t->rows + r] = rq_fp16_to_fp32(t->a[k * t->rows + r]) * (float)z;
        }
    }
    float term[RQ_REP_MAX_K];
    for (int64_t r = 0; r < t->rows; r++) {
        for (int k = 0; k < t->K; k++)
            term[k] = yk[k * t->rows + r];
        y[r] = pairwise(term, t->K);
    }
    free(u);
    free(yk);
}

int rq_rep_compute_multiplier(const rq_rep *t) { return t->K; }

/* Whether the K vectors v_k[0..n) (f16, stacked) are all proportional to one
 * vector: the residual of their best rank-1 approximation (total energy minus the
 * K x K Gram matrix's largest eigenvalue, from LAPACK) is at most tol^2 of their
 * total energy. */
static bool rank1(const uint16_t *v, int K, int64_t n, double tol) {
    double G[RQ_REP_MAX_K * RQ_REP_MAX_K], ev[RQ_REP_MAX_K], tot = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t c = 0; c < n; c++)
                s += (double)rq_fp16_to_fp32(v[i * n + c]) * rq_fp16_to_fp32(v[j * n + c]);
            G[i * K + j] = G[j * K + i] = s;
        }
    for (int i = 0; i < K; i++)
        tot += G[i * K + i];
    if (tot == 0) return true;
    rq_blas_single(); /* LAPACK on one OpenBLAS thread: the same bits at any -t */
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', K, G, K, ev) != 0) return false;
    return tot - ev[K - 1] <= tol * tol * tot; /* eigenvalues ascending */
}

static bool all_zero(const uint16_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (v[i] & 0x7fff) return false;
    return true;
}

bool rq_rep_collapses(const rq_rep *t, double tol) {
    if (t->K == 1) return true;
    /* replicas in different bases are a lattice, not one grid, unless all but one
     * basis hold only replicas that add nothing (a_k or b_k all 0) */
    int first = -1;
    for (int k = 0; t->rot_kind && k < t->K; k++) {
        if (all_zero(t->a + (size_t)k * t->rows, t->rows) || all_zero(t->b + (size_t)k * t->cols, t->cols)) continue;
        if (first < 0)
            first = k;
        else if (t->rot_kind[k] != t->rot_kind[first] ||
                 (t->rot_kind[k] != RQ_REP_ROT_NONE && t->rot_seed[k] != t->rot_seed[first]))
            return false;
    }
    return rank1(t->b, t->K, t->cols, tol) || rank1(t->a, t->K, t->rows, tol);
}

/* ---- packed layout ---- */

static uint64_t row_bytes(int bits, int64_t cols) { return ((uint64_t)cols * (uint64_t)bits + 7) / 8; }

/* the rotation arrays: K kinds padded to 8 bytes, then K seeds */
static size_t kind_bytes(int K) { return ((size_t)K + 7) / 8 * 8; }
static size_t rot_bytes(int K, bool rotated) { return rotated ? kind_bytes(K) + (size_t)K * 8 : 0; }

size_t rq_rep_size(int bits, int K, int64_t rows, int64_t cols, bool rotated) {
    return RQ_REP_HEADER + (size_t)rows * row_bytes(bits, cols) + (size_t)K * 2 * (size_t)(rows + cols) +
           (size_t)K * 4 + rot_bytes(K, rotated);
}

rq_rep_bits rq_rep_bits_of(int bits, int K, int64_t rows, int64_t cols, bool rotated) {
    rq_rep_bits b;
    b.n_weights = rows * cols;
    b.code_bits = 8 * (int64_t)((uint64_t)rows * row_bytes(bits, cols));
    b.param_bits = 8 * ((int64_t)K * 2 * (rows + cols) + (int64_t)K * 4 + (int64_t)rot_bytes(K, rotated));
    b.header_bits = 8 * RQ_REP_HEADER;
    return b;
}

static int check(const rq_rep *t) {
    if (t->bits < 1 || t->bits > 8) return rq_fail("replicated tensor: bits = %d must be in 1..8", t->bits);
    if (t->K < 1 || t->K > RQ_REP_MAX_K)
        return rq_fail("replicated tensor: K = %d replicas must be in 1..%d", t->K, RQ_REP_MAX_K);
    if (t->combine != RQ_REP_COMBINE_LINEAR && t->combine != RQ_REP_COMBINE_MLP)
        return rq_fail("replicated tensor: combination rule %d is unknown (this build knows 0, the sum of the linear "
                       "outputs, and 1, the sum of an MLP's paths); written by a newer repliq?",
                       t->combine);
    if (t->rows < 1 || t->cols < 1 || t->cols > INT32_MAX || t->rows > INT32_MAX)
        return rq_fail("replicated tensor: shape [%lld, %lld] must have rows and cols in 1..2^31-1", (long long)t->rows,
                       (long long)t->cols);
    return 0;
}

static bool f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

static int check_payload(const rq_rep *t) {
    int maxq = (1 << t->bits) - 1;
    for (int64_t i = 0; i < t->rows * t->cols; i++)
        if (t->q[i] > maxq)
            return rq_fail("replicated tensor: code %d at row %lld col %lld is out of range for %d bits", t->q[i],
                           (long long)(i / t->cols), (long long)(i % t->cols), t->bits);
    for (int64_t i = 0; i < t->K * t->rows; i++)
        if (!f16_finite(t->a[i]))
            return rq_fail("replicated tensor: replica %lld's row factor %lld is not finite", (long long)(i / t->rows),
                           (long long)(i % t->rows));
    for (int64_t i = 0; i < t->K * t->cols; i++)
        if (!f16_finite(t->b[i]))
            return rq_fail("replicated tensor: replica %lld's column factor %lld is not finite",
                           (long long)(i / t->cols), (long long)(i % t->cols));
    for (int k = 0; k < t->K; k++)
        if (!isfinite(t->o[k])) return rq_fail("replicated tensor: replica %d's offset is not finite", k);
    for (int k = 0; t->rot_kind && k < t->K; k++) {
        if (t->rot_kind[k] > RQ_REP_ROT_RH)
            return rq_fail("replicated tensor: replica %d's rotation kind %d is unknown (this build knows 0, none, and "
                           "1, a random Hadamard transform); written by a newer repliq?",
                           k, t->rot_kind[k]);
        if (t->rot_kind[k] == RQ_REP_ROT_NONE && t->rot_seed[k])
            return rq_fail("replicated tensor: replica %d has no rotation but a rotation seed (%llu); damaged", k,
                           (unsigned long long)t->rot_seed[k]);
    }
    return 0;
}

size_t rq_rep_packed_size(const rq_rep *t) { return rq_rep_size(t->bits, t->K, t->rows, t->cols, rq_rep_rotated(t)); }

int rq_rep_pack(const rq_rep *t, uint8_t *dst) {
    if (check(t) || check_payload(t)) return -1;
    const bool rotated = rq_rep_rotated(t);
    size_t n = rq_rep_packed_size(t);
    memset(dst, 0, n);
    memcpy(dst, magic, 4);
    rq_put_u16(dst + 4, rotated ? 2 : 1);
    dst[27] = rotated;
    rq_put_u64(dst + 8, (uint64_t)t->rows);
    rq_put_u64(dst + 16, (uint64_t)t->cols);
    dst[24] = (uint8_t)t->bits;
    dst[25] = (uint8_t)t->K;
    dst[26] = (uint8_t)t->combine;
    uint8_t *p = dst + RQ_REP_HEADER;
    uint64_t rb = row_bytes(t->bits, t->cols);
    for (int64_t r = 0; r < t->rows; r++)
        rq_pack_codes(t->q + r * t->cols, t->cols, t->bits, p + r * rb);
    p += (size_t)t->rows * rb;
    for (int64_t i = 0; i < t->K * t->rows; i++, p += 2)
        rq_put_u16(p, t->a[i]);
    for (int64_t i = 0; i < t->K * t->cols; i++, p += 2)
        rq_put_u16(p, t->b[i]);
    for (int k = 0; k < t->K; k++, p += 4)
        rq_put_u32(p, rq_f32_bits(t->o[k]));
    if (rotated) {
        memcpy(p, t->rot_kind, (size_t)t->K);
        p += kind_bytes(t->K);
        for (int k = 0; k < t->K; k++, p += 8)
            rq_put_u64(p, t->rot_seed[k]);
    }
    return 0;
}

bool rq_rep_is_blob(const void *src, size_t n) { return n >= 4 && !memcmp(src, magic, 4); }

int rq_rep_peek(const uint8_t *p, size_t n, rq_rep *h, int *version, bool *rotated) {
    memset(h, 0, sizeof *h);
    if (n < RQ_REP_HEADER)
        return rq_fail("replicated tensor: %zu bytes, shorter than its %d-byte header (truncated)", n, RQ_REP_HEADER);
    if (memcmp(p, magic, 4))
        return rq_fail("replicated tensor: bad magic %02x %02x %02x %02x (expected \"RQR1\")", p[0], p[1], p[2], p[3]);
    int v = rq_get_u16(p + 4);
    if (v < 1 || v > RQ_REP_VERSION)
        return rq_fail("replicated tensor: version %d %s (this build reads 1..%d)%s", v,
                       v < 1 ? "is invalid" : "is newer than this build reads", RQ_REP_VERSION,
                       v < 1 ? "; damaged" : "; upgrade repliq");
    if (rq_get_u16(p + 6) || (v < 2 && p[27]) || rq_get_u32(p + 28))
        return rq_fail("replicated tensor: reserved header fields are not 0; written by a newer repliq, or damaged");
    if (p[27] > 1)
        return rq_fail("replicated tensor: rotation flag %d is unknown (0 or 1); written by a newer repliq, or damaged",
                       p[27]);
    h->rows = (int64_t)rq_get_u64(p + 8);
    h->cols = (int64_t)rq_get_u64(p + 16);
    h->bits = p[24];
    h->K = p[25];
    h->combine = p[26];
    if (check(h)) return -1;
    size_t want = rq_rep_size(h->bits, h->K, h->rows, h->cols, p[27] != 0);
    if (n != want)
        return rq_fail("replicated tensor [%lld, %lld] K=%d: %zu bytes, but its header implies %zu (%s)",
                       (long long)h->rows, (long long)h->cols, h->K, n, want,
                       n < want ? "truncated" : "trailing bytes");
    if (version) *version = v;
    if (rotated) *rotated = p[27] != 0;
    return 0;
}

int rq_rep_unpack(const uint8_t *src, size_t n, rq_rep *out) {
    rq_rep h;
    memset(out, 0, sizeof *out);
    bool rotated;
    if (rq_rep_peek(src, n, &h, NULL, &rotated)) return -1;
    rq_rep_alloc(out, h.bits, h.K, h.rows, h.cols);
    out->combine = h.combine;
    const uint8_t *p = src + RQ_REP_HEADER;
    uint64_t rb = row_bytes(h.bits, h.cols);
    for (int64_t r = 0; r < h.rows; r++)
        if (rq_unpack_codes(p + r * rb, h.cols, h.bits, rb, out->q + r * h.cols)) {
            rq_rep_free(out);
            return rq_fail("replicated tensor: code row %lld has nonzero padding bits; damaged", (long long)r);
        }
    p += (size_t)h.rows * rb;
    for (int64_t i = 0; i < h.K * h.rows; i++, p += 2)
        out->a[i] = rq_get_u16(p);
    for (int64_t i = 0; i < h.K * h.cols; i++, p += 2)
        out->b[i] = rq_get_u16(p);
    for (int k = 0; k < h.K; k++, p += 4)
        out->o[k] = rq_f32_from_bits(rq_get_u32(p));
    if (rotated) {
        memcpy(out->rot_kind, p, (size_t)h.K);
        for (size_t i = (size_t)h.K; i < kind_bytes(h.K); i++)
            if (p[i]) {
                rq_rep_free(out);
                return rq_fail("replicated tensor: padding after the rotation kinds is not 0; damaged");
            }
        p += kind_bytes(h.K);
        for (int k = 0; k < h.K; k++, p += 8)
            out->rot_seed[k] = rq_get_u64(p);
        if (!rq_rep_rotated(out)) {
            rq_rep_free(out);
            return rq_fail(
                "replicated tensor: the rotation flag is set but no replica is rotated (written as version 1 "
                "when none is); damaged");
        }
    }
    if (check_payload(out)) {
        rq_rep_free(out);
        return -1;
    }
    return 0;
}
