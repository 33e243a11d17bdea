/* recipe.h - a quantization recipe: the grid, the method and its options, per-
 * tensor overrides by name pattern, calibration and activation settings. Read
 * from a versioned JSON file, validated when read, and written back as
 * canonical JSON into the output file so a result is reproducible from it. */
#ifndef RQ_RECIPE_H
#define RQ_RECIPE_H

#include <stdbool.h>
#include <stdint.h>

#include "actq.h"
#include "grid.h"
#include "mlptrain.h"
#include "quant.h"
#include "repfit.h"

#define RQ_RECIPE_VERSION 1

typedef enum { RQ_METHOD_KEEP = 0, RQ_METHOD_RTN = 1, RQ_METHOD_GPTQ = 2 } rq_method;

/* What happens to one tensor. KEEP copies the source tensor's bytes unchanged. */
typedef struct {
    rq_method method;
    rq_grid grid;
    rq_gptq_opts gptq;
    /* layer replication (replica.h, repfit.h); rep.K == 0: not replicated. Only
     * with GPTQ; the grid's bits are the codes' bits, and the codes are symmetric
     * with one row scale per replica whatever group and sym say. */
    rq_rep_opts rep;
} rq_tensor_recipe;

/* rq_actq (simulated activation / KV quantization) lives in actq.h. */

typedef struct {
    char pattern[128]; /* fnmatch(3) glob over GGUF tensor names */
    uint32_t set;      /* bit mask of RQ_OV_* fields this override sets */
    rq_tensor_recipe r;
} rq_override;

enum {
    RQ_OV_METHOD = 1u << 0,
    RQ_OV_BITS = 1u << 1,
    RQ_OV_SYM = 1u << 2,
    RQ_OV_GROUP = 1u << 3,
    RQ_OV_MSE = 1u << 4,
    RQ_OV_MSE_MIN = 1u << 5,
    RQ_OV_MSE_STEPS = 1u << 6,
    RQ_OV_OFFSET = 1u << 7,
    RQ_OV_ROUND = 1u << 8,
    RQ_OV_NOISE = 1u << 9,
    RQ_OV_BINRES = 1u << 10,
    RQ_OV_SALIENT = 1u << 11,
    RQ_OV_DAMP = 1u << 12,
    RQ_OV_BLOCK = 1u << 13,
    RQ_OV_ACT_ORDER = 1u << 14,
    RQ_OV_STATIC = 1u << 15,
    RQ_OV_REPLICATE = 1u << 16,
};

typedef struct {
    int version;
    char name[64];
    rq_tensor_recipe base; /* for the linear layers of every block */
    rq_override *ov;       /* applied in order, later ones win */
    int n_ov;
    uint64_t seed;       /* calibration shuffle, stochastic rounding, noise */
    int calib_n;         /* calibration windows (default 8) */
    int calib_len;       /* tokens per window (default 2048) */
    bool calib_feed_ref; /* feed each block reference inputs instead of quantized ones */
    bool calib_true_seq; /* each linear's inputs recollected after the block's earlier linears are quantized
                            (GPTQ's true-sequential: q/k/v, then o, then gate/up, then down) */
    rq_actq act;
    /* frozen-code training of each block's replicated MLP (mlptrain.h) after its
     * three matrices are fitted; recipe key "mlp_train" (null: off) */
    bool mlp_train_on;
    rq_mlptrain_opts mlp_train;
} rq_recipe;

/* Defaults: GPTQ, the rq_grid_default() grid, token_embd/output kept as they are. */
void rq_recipe_default(rq_recipe *r);
/* Parse JSON text (src names the origin in messages). Unknown keys, wrong types
 * and out-of-range values are refused with a message naming the key. */
int rq_recipe_parse(const char *json, const char *src, rq_recipe *r);
int rq_recipe_load(const char *path, rq_recipe *r);
void rq_recipe_free(rq_recipe *r);

/* The settings for one GGUF tensor name: blk.*.{attn_q,attn_k,attn_v,attn_output,
 * ffn_gate,ffn_up,ffn_down}.weight start from base, everything else from KEEP
 * (with the base's grid and options, used if an override sets a method); then
 * every matching override (fnmatch, flags 0) in order, setting only its keys. */
void rq_recipe_for_tensor(const rq_recipe *r, const char *name, rq_tensor_recipe *out);

/* Canonical JSON of the whole recipe (every field, defaults included); malloc'd. */
char *rq_recipe_to_json(const rq_recipe *r);

#endif
