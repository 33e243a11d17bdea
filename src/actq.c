/* actq.c - per-token activation and per-head KV quantization, simulated in f32
 * (quantize then dequantize), so perplexity shows what the integer kernels lose. */
#include "actq.h"

#include <math.h>

#include "util.h"

int rq_actq_check(const rq_actq *a) {
    if (!(a->a_bits == 0 || a->a_bits == 16 || (a->a_bits >= 2 && a->a_bits <= 8)))
        return rq_fail("act bits = %d: use 0 (off), 2..8, or 16", a->a_bits);
    if (!(a->a_clip > 0.0f && a->a_clip <= 1.0f)) return rq_fail("act clip = %g must be in (0, 1]", a->a_clip);
    if (!(a->kv_bits == 0 || a->kv_bits == 16 || (a->kv_bits >= 2 && a->kv_bits <= 8)))
        return rq_fail("kv bits = %d: use 0 (off), 2..8, or 16", a->kv_bits);
    if (!(a->keep_massive >= 0.0f && isfinite(a->keep_massive)))
        return rq_fail("keep_massive = %g must be >= 0 (0 = off)", a->keep_massive);
    return 0;
}

static void round16(float *x, int64_t n, bool bf16) {
    for (int64_t i = 0; i < n; i++)
        x[i] = bf16 ? rq_bf16_to_fp32(rq_fp32_to_bf16(x[i])) : rq_fp16_to_fp32(rq_fp32_to_fp16(x[i]));
}

void rq_actq_tokens(float *x, int n, int dim, int bits, float clip, bool bf16) {
    if (bits == 0) return;
    if (bits == 16) {
        round16(x, (int64_t)n * dim, bf16);
        return;
    }
    float qmax = (float)((1 << (bits - 1)) - 1);
    for (int t = 0; t < n; t++) {
        float *xt = x + (size_t)t * dim, a = 0.0f;
        for (int i = 0; i < dim; i++)
            a = fmaxf(a, fabsf(xt[i]));
        float s = clip * a / qmax;
        if (s == 0.0f) continue;
        float inv = 1.0f / s;
        for (int i = 0; i < dim; i++) {
            float q = floorf(xt[i] * inv + 0.5f);
            q = q > qmax ? qmax : q < -qmax ? -qmax : q;
            xt[i] = q * s;
        }
    }
}

void rq_kvq_tokens(float *x, int n, int n_heads, int hd, int bits) {
    if (bits == 0) return;
    if (bits == 16) {
        round16(x, (int64_t)n * n_heads * hd, false);
        return;
    }
    int gs = hd < 128 ? hd : 128;
    float maxq = (float)((1 << bits) - 1);
    for (int64_t r = 0; r < (int64_t)n * n_heads; r++)
        for (int g0 = 0; g0 < hd; g0 += gs) {
            float *v = x + r * hd + g0;
            int len = hd - g0 < gs ? hd - g0 : gs;
            float lo = v[0], hi = v[0];
            for (int i = 1; i < len; i++)
                lo = fminf(lo, v[i]), hi = fmaxf(hi, v[i]);
            float s = (hi - lo) / maxq;
            if (s == 0.0f) continue;
            float inv = 1.0f / s;
            for (int i = 0; i < len; i++) {
                float q = floorf((v[i] - lo) * inv + 0.5f);
                q = q > maxq ? maxq : q < 0 ? 0 : q;
                v[i] = lo + q * s;
            }
        }
}

void rq_kvq_keys(float *k, const float *kb, int n, int n_heads, int hd, int bits) {
    if (bits == 0) return;
    int64_t nD = (int64_t)n * n_heads * hd;
    if (kb)
        for (int64_t i = 0; i < nD; i++)
            k[i] -= kb[i];
    rq_kvq_tokens(k, n, n_heads, hd, bits);
    if (kb)
        for (int64_t i = 0; i < nD; i++)
            k[i] += kb[i];
}

bool rq_actq_kv_unbiased(const rq_actq *a) { return a->kv_unbias && a->kv_bits != 0 && a->kv_bits != 16; }
