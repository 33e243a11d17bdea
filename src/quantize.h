/* quantize.h - the layer-by-layer quantization driver: calibration windows go
 * through the model one block at a time; each block's linear layers are
 * quantized (RTN or GPTQ from the block's input statistics) and its quantized
 * outputs feed the next block. Writes a GGUF with packed tensors and the recipe. */
#ifndef RQ_QUANTIZE_H
#define RQ_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calib.h"
#include "recipe.h"

typedef struct {
    int64_t weights, bits; /* elements and stored bits (codes + parameters + headers) */
} rq_bits_sum;

typedef struct {
    rq_bits_sum linear;   /* the seven linear layers of every block */
    rq_bits_sum embd_out; /* token_embd and output (once when tied) */
    rq_bits_sum other;    /* norms, biases */
    int64_t calib_tokens;
    double seconds;
    size_t peak_rss;
    size_t file_bytes;
    double rel_err_mean; /* mean over GPTQ/RTN-with-calibration tensors of ||(W'-W)X||^2 / ||WX||^2 */
    /* mlp_train: blocks trained, and the mean held-out MLP output error relative to
     * the reference output's energy before and after training (mlptrain.h) */
    int mlp_trained;
    double mlp_val_start_mean, mlp_val_best_mean;
} rq_quant_report;

/* One quantized tensor, as reported to rq_quant_job.on_tensor. */
typedef struct {
    const char *name;
    int64_t rows, cols;
    int bits, K;          /* K: replicas (0 when not replicated) */
    int64_t stored_bits;  /* the packed blob, header included */
    double rel_err;       /* ||(W'-W)X||^2 / ||WX||^2; -1 without calibration inputs */
    double rel_err_start; /* replicated: the per-row GPTQ codes the fit started from; else -1 */
    double seconds;
} rq_tensor_stat;

typedef struct {
    const char *model;      /* GGUF path or Hugging Face folder */
    const char *calib_path; /* JSON-lines calibration file (needed when a tensor uses GPTQ) */
    const rq_calib *calib;  /* or ready-made calibration windows (tests); calib_path is then unused */
    const char *out_path;
    int verbose;  /* one line per tensor on stderr */
    bool measure; /* run calibration even when no tensor needs it (RTN), to report layer errors */
    void (*on_tensor)(void *ctx, const rq_tensor_stat *st); /* optional, once per quantized tensor */
    void *on_tensor_ctx;
} rq_quant_job;

int rq_quantize_model(const rq_quant_job *job, const rq_recipe *r, rq_quant_report *rep);

#endif
