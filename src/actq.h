/* actq.h - simulated activation and KV-cache quantization: what a W4A8 or
 * W4A4-KV4 kernel would see, applied to f32 tensors in place. */
#ifndef RQ_ACTQ_H
#define RQ_ACTQ_H

#include <stdbool.h>

/* bits 0 = off; 16 = round to f16 (bf16 when a_bf16); 2..8 = integer. */
typedef struct {
    int a_bits;   /* inputs of every linear layer: per token, symmetric */
    float a_clip; /* clipping ratio of the per-token max |x|, in (0, 1] */
    bool a_bf16;  /* 16 bits means bf16 rather than f16 */
    int kv_bits;  /* K (after RoPE) and V: asymmetric per head per token, groups of min(128, head_dim) */
    /* Ablation "massive activations kept in 16-bit": > 0 leaves the tokens whose
     * residual stream at a block's input has an RMS above keep_massive x the
     * window's median token RMS at f16 in that block's linear inputs (the RMS,
     * unlike a channel, survives rotation). 0 = off. Set by ppl --keep-massive
     * only: neither recipes nor files carry it. */
    float keep_massive;
    bool kv_unbias; /* quantize keys without the K projection's bias (its image at each position,
                       after RoPE and R3, is added back exactly); no effect on models without one */
} rq_actq;

/* Validate; the message names the field. */
int rq_actq_check(const rq_actq *a);
/* x[n, dim]: each token quantized symmetrically to a_bits (levels -(2^(b-1)-1)..2^(b-1)-1,
 * step clip*max|x|/(2^(b-1)-1)), or rounded to f16/bf16 for 16. */
void rq_actq_tokens(float *x, int n, int dim, int bits, float clip, bool bf16);
/* x[n, n_heads*hd]: each token's head split into groups of min(128, hd), each
 * group asymmetric min/max with 2^bits levels; 16 rounds to f16. */
void rq_kvq_tokens(float *x, int n, int n_heads, int hd, int bits);
/* Keys k[n, n_heads*hd] through rq_kvq_tokens with kb (the K bias's image at each
 * position; NULL = none) taken out before and put back after; bits 0 leaves k as is. */
void rq_kvq_keys(float *k, const float *kb, int n, int n_heads, int hd, int bits);
/* Whether a's KV quantization takes the K bias out of the keys: kv_unbias with an
 * integer cache (2..8 bits; f16 rounding and no quantization keep the keys whole). */
bool rq_actq_kv_unbiased(const rq_actq *a);

#endif
