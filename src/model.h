/* model.h - a decoder-only transformer (Llama, Qwen2) held as f32 weights, the
 * per-architecture adapter table, and loading from GGUF or a Hugging Face folder. */
#ifndef RQ_MODEL_H
#define RQ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actq.h"
#include "gguf.h"
#include "replica.h"

struct rq_tokenizer;

/* What the GGUF metadata does not say about an architecture. */
typedef struct {
    const char *name;   /* general.architecture */
    bool rope_neox;     /* rotate pairs (i, i + d/2) instead of (2i, 2i+1) */
    bool qkv_bias;      /* Q, K, V projections carry a bias */
    bool hf_permute_qk; /* HF checkpoints store Q/K rows in the NeoX order; GGUF re-orders them */
} rq_arch;

/* The adapter for an architecture name, or NULL with an error listing the supported ones. */
const rq_arch *rq_arch_find(const char *name);

typedef struct {
    const rq_arch *arch;
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_ctx_train;
    float rope_base, norm_eps;
    bool tied_output; /* output matrix is the token embedding */
} rq_config;

/* y = W x (+ b); W is [rows, cols] row-major: rows outputs, cols inputs. */
typedef struct {
    float *w;
    float *b; /* NULL without bias */
    int64_t rows, cols;
} rq_linear;

typedef struct {
    float *attn_norm, *ffn_norm; /* [n_embd] */
    rq_linear q, k, v, o, gate, up, down;
    /* An MLP replicated after its nonlinearity (replica.h, combine 1) has
     * ffn_paths = K > 1 paths: path 0 is gate/up/down, path p >= 1 is ffn_extra[3 (p
     * - 1) + 0..2] (gate, up, down); the block adds the paths' outputs. 0 or 1: one. */
    int ffn_paths;
    rq_linear *ffn_extra;
} rq_layer;

/* Matrix j (0 gate, 1 up, 2 down) of every path from the replicas of r (an MLP
 * replicated after its nonlinearity): path k's gets replica k, dequantized into
 * its f32 matrix (allocated when missing). The first call sets ffn_paths = K. */
void rq_layer_set_mlp_replicas(rq_layer *L, int j, const rq_rep *r);

/* The MLP paths of a layer (at least 1), and path p's three matrices. */
int rq_layer_ffn_paths(const rq_layer *L);
void rq_layer_ffn_path(const rq_layer *L, int p, const rq_linear **gate, const rq_linear **up, const rq_linear **down);

#define RQ_ROT_NONE (-1) /* a rotation stage left out */

/* Online transforms a rotated model file asks the forward pass to apply
 * (repliq.rot.r3 / r4 / seed; see rotate.h): R3 on Q and K after RoPE, R4 on the
 * down projection's input. Each is an rq_orth_kind (hadamard.h) or RQ_ROT_NONE. */
typedef struct {
    int r3, r4;
    uint64_t seed;
} rq_online_rot;

/* The seed of rotation stage 1..4: distinct streams of one seed, so that stages of
 * equal order still differ. The folding and the evaluator both use it. */
uint64_t rq_rot_stage_seed(uint64_t seed, int stage);

typedef struct rq_model {
    rq_config cfg;
    float *tok_embd; /* [n_vocab, n_embd] */
    float *out_norm; /* [n_embd] */
    rq_linear output;
    rq_layer *layers;
    struct rq_tokenizer *tok; /* NULL when the file carries no tokenizer */
    char *path;
    char *name;           /* general.name, or the file name */
    int64_t n_params;     /* counting the tied output once */
    rq_actq actq;         /* simulated activation/KV quantization the file asks for (repliq.act.*) */
    rq_online_rot online; /* online rotations the file asks for (repliq.rot.*) */
} rq_model;

/* Load a GGUF file, or a Hugging Face folder (config.json + *.safetensors); all
 * weights are dequantized to f32. Shapes are checked against the configuration. */
int rq_model_load(const char *path, rq_model **out);
/* The same from an open file view (kept open by the caller only during the call). */
int rq_model_from_gguf(const rq_gguf *g, rq_model **out);
void rq_model_free(rq_model *m);

/* Names of the seven linear layers of a block: blk.N.{attn_q,attn_k,attn_v,
 * attn_output,ffn_gate,ffn_up,ffn_down}.weight. */
bool rq_is_block_linear(const char *name);

/* A named 2-D tensor [ne1 rows, ne0 cols] dequantized to f32 (ggml types or a
 * packed blob), its shape checked; NULL with a message when missing or wrong. */
float *rq_tensor_load_f32(const rq_gguf *g, const char *name, int64_t ne0, int64_t ne1);

/* out[n, ne0] = rows ids[0..n) of that tensor. A ggml type is read row by row from
 * the file (the table itself is never held in f32); a packed blob is decoded whole
 * and freed. Ids outside [0, ne1) are refused; -1 with a message on any failure. */
int rq_tensor_rows_f32(const rq_gguf *g, const char *name, int64_t ne0, int64_t ne1, const int32_t *ids, int64_t n,
                       float *out);

/* Whether two files hold the same model shape: architecture, every dimension, and
 * every repliq.rot.* key (the rotations folded in and run online). 0 and *c set
 * (a's configuration) when they agree; else -1 with a message naming what differs,
 * ending in hint (what the user should pair instead). */
int rq_same_model(const rq_gguf *a, const rq_gguf *b, const char *hint, rq_config *c);

/* The activation and KV quantization a file asks for (repliq.act.*, repliq.kv.*; absent
 * keys mean none), checked; -1 with a message when a value is out of range. */
int rq_actq_from_gguf(const rq_gguf *g, rq_actq *a);

/* K >= 1 when block layer's MLP runs as K paths combined after the nonlinearity
 * ("combine": "mlp"), 0 when it does not, -1 with a message when its three
 * matrices disagree. */
int rq_block_mlp_paths(const rq_gguf *g, int layer);

/* One block's weights (blk.i.*) as f32, for tools that go layer by layer. */
int rq_layer_load(const rq_gguf *g, const rq_config *c, int i, rq_layer *L);
void rq_layer_free(rq_layer *L);

/* repliq.rot.r3 / r4 / seed of a file (absent: none); an unknown kind is refused. */
int rq_online_from_gguf(const rq_gguf *g, rq_online_rot *on);

/* Read the configuration of an architecture-tagged GGUF without loading weights. */
int rq_config_from_gguf(const rq_gguf *g, rq_config *cfg);

#endif
