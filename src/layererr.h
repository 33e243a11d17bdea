/* layererr.h - the layer objective on any text: for every linear layer of a
 * quantized model, ||(W' - W) X||^2 and ||W X||^2 over the inputs X that a text
 * produces, W' the quantized model's matrix and W the reference's (same basis:
 * a rotated model's quantized file against the rotated f32 file). On the
 * calibration windows with the quantized model feeding (true-sequential GPTQ's
 * setting) it is the relative error quantize reports; on other text it shows
 * whether a fit that lowers the calibration objective lowers it elsewhere. */
#ifndef RQ_LAYERERR_H
#define RQ_LAYERERR_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    RQ_LERR_FEED_QUANT = 0, /* the quantized model's own activations (GPTQ's "feed": "quantized") */
    RQ_LERR_FEED_REF,       /* the reference model's activations */
} rq_lerr_feed;

typedef struct {
    char name[48]; /* blk.N.attn_q.weight, ... */
    int layer;
    int64_t rows, cols;
    double err; /* sum over tokens of ||(W' - W) x||^2 (biases cancel) */
    double ref; /* sum over tokens of ||W x||^2, bias left out */
    /* T ||mean over tokens of (W' - W) x||^2: the part of err that is the same
     * offset on every token (err = that + the spread around it) */
    double err_mean;
} rq_lerr_entry;

typedef struct {
    int n;            /* 7 per block, in block order: q, k, v, o, gate, up, down */
    rq_lerr_entry *e; /* [n] */
    int64_t n_tokens;
} rq_lerr;

/* err / ref (0 when ref is 0). */
double rq_lerr_rel(const rq_lerr_entry *e);
/* err_mean / err: how much of the error is a constant offset (0 when err is 0). */
double rq_lerr_mean_share(const rq_lerr_entry *e);

/* Run tokens [n_win, win_len] (each window from position 0, as given: put a BOS
 * in yourself) through the fed model block by block and compare, at each linear
 * input, the quantized file's matrices with the reference file's. Both files are
 * read one block at a time: memory is one block of each, the token embedding and
 * the windows' residual streams, whatever the depth. No activation or KV
 * quantization is simulated; the files' online rotations apply (they must be the
 * same). Refuses models whose shapes, architecture or online rotations differ,
 * MLPs replicated after the nonlinearity (no single matrix), and token ids outside
 * the vocabulary. */
int rq_layer_errors(const char *quant_path, const char *ref_path, const int32_t *tokens, int n_win, int win_len,
                    rq_lerr_feed feed, bool progress, rq_lerr *out);
void rq_lerr_free(rq_lerr *r);

/* One JSON object per line and tensor: name, layer, rows, cols, rel_err, err, ref,
 * mean_share, tokens, and the given feed and source labels; written to path.tmp
 * and renamed once complete. The fields name and rel_err are those of quantize's
 * per-tensor log, so scripts/layer_compare.py reads both. */
int rq_lerr_save_jsonl(const rq_lerr *le, const char *feed, const char *source, const char *path);

#endif
