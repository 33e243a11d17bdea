/* forward.h - the f32 forward pass over a whole sequence at once (prefill), as
 * perplexity needs it: batched through BLAS GEMM, causal attention, RoPE. */
#ifndef RQ_FORWARD_H
#define RQ_FORWARD_H

#include <stdint.h>

#include "hadamard.h"
#include "model.h"

/* Scratch buffers for sequences of up to n_ctx tokens, reused across calls. */
typedef struct rq_fwd rq_fwd;

rq_fwd *rq_fwd_new(const rq_model *m, int n_ctx); /* takes the model's activation quantization and online
                                                     rotations; NULL with a message if those fail */
/* Scratch for running single layers of a model with this configuration (no
 * weights needed up front): rq_fwd_layer only; rq_fwd_hidden needs rq_fwd_new. */
rq_fwd *rq_fwd_new_cfg(const rq_config *c, int n_ctx);
void rq_fwd_free(rq_fwd *f);
void rq_fwd_set_actq(rq_fwd *f, const rq_actq *a);
/* The online rotations of a rotated model (rq_fwd_new takes the model's). */
int rq_fwd_set_online(rq_fwd *f, const rq_online_rot *on);

/* Where a hook sees a linear layer's input (after activation quantization). In a
 * block whose MLP has K paths (model.h), RQ_HOOK_DOWN_IN is called once per path. */
typedef enum { RQ_HOOK_ATTN_IN = 0, RQ_HOOK_O_IN, RQ_HOOK_FFN_IN, RQ_HOOK_DOWN_IN, RQ_HOOK_COUNT } rq_hook_point;
typedef void (*rq_fwd_hook)(void *ctx, int layer, rq_hook_point p, const float *x, int n, int cols);

/* One transformer block on x[n, n_embd] in place (tokens at positions 0..n-1);
 * hook (may be NULL) is called with each linear input. */
void rq_fwd_layer(rq_fwd *f, const rq_layer *L, int layer, float *x, int n, rq_fwd_hook hook, void *ctx);
/* The same as far as the hook at last, for when only the inputs are wanted (all of
 * them: last = RQ_HOOK_DOWN_IN; GPTQ's true-sequential collects one point at a
 * time). What follows is skipped, so x is left partly updated: from RQ_HOOK_FFN_IN
 * on it holds the block's input plus its attention output, not the block's output. */
void rq_fwd_layer_until(rq_fwd *f, const rq_layer *L, int layer, float *x, int n, rq_hook_point last, rq_fwd_hook hook,
                        void *ctx);

/* Called in each block with its keys k[n, n_head_kv * head_dim] just before the
 * simulated K cache quantizes them (after RoPE and R3), and kb, the K bias's image
 * at each position (NULL when the layer has no K bias): repliq inspect kv. */
typedef void (*rq_fwd_kv_hook)(void *ctx, int layer, const float *k, const float *kb, int n);
void rq_fwd_set_kv_hook(rq_fwd *f, rq_fwd_kv_hook hook, void *ctx);

/* Run tokens[0..n) at positions 0..n-1 (n <= n_ctx) and leave the final-norm
 * hidden states [n, n_embd] in the returned buffer (owned by f). */
const float *rq_fwd_hidden(rq_fwd *f, const int32_t *tokens, int n);

/* logits[n, n_vocab] = hidden[n, n_embd] * output^T */
void rq_fwd_logits(const rq_model *m, const float *hidden, int n, float *logits);

/* Threads for the products (gemm.c) and the elementwise loops. */
void rq_set_threads(int n);

/* Scalar reference for one linear layer y[n, rows] = x[n, cols] W^T + b, the
 * definition the GEMM path is tested against. */
void rq_linear_ref(const rq_linear *l, const float *x, int n, float *y);

/* Scalar reference of the whole forward pass, one token at a time with a KV
 * cache: logits[n, n_vocab] for tokens[0..n). */
int rq_forward_ref(const rq_model *m, const int32_t *tokens, int n, float *logits);

/* The online rotation of the down projection's input (NULL when none), for code
 * that repeats the MLP outside the forward pass (mlptrain.h). */
const rq_orth *rq_fwd_online_r4(const rq_fwd *f);

#endif
