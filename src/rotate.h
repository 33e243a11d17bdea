/* rotate.h - QuaRot-style rotation of a Llama / Qwen2 model, folded into the
 * weights (computational invariance: RMSNorm(x Q) = RMSNorm(x) Q for orthogonal
 * Q once the norm's scale is moved into the next linear layers), plus the online
 * transforms that cannot be folded (R3 on Q/K after RoPE, R4 before the down
 * projection), which are recorded in the file for the evaluator.
 *
 *   R1  residual stream, n_embd: embeddings, Q/K/V, gate/up (input side),
 *       attn_output, ffn_down (output side), output matrix (tied ones untied)
 *   R2  per head, head_dim: V's output rows and attn_output's input columns
 *   R3  online, head_dim: Q and K after RoPE (scores unchanged; the K cache is
 *       quantized in the rotated basis)
 *   R4  online, n_ff: the down projection's input; its inverse is folded into
 *       ffn_down's columns
 * The rotated model is an ordinary GGUF (all tensors f32) that any repliq tool
 * reads; metadata repliq.rot.* says what was done. */
#ifndef RQ_ROTATE_H
#define RQ_ROTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "hadamard.h"
#include "model.h"

typedef struct {
    int r1, r2, r3, r4;     /* rq_orth_kind, or RQ_ROT_NONE */
    uint64_t seed;          /* each stage draws from its own stream of this seed */
    const float *r1_matrix; /* optional [n_embd, n_embd] R1 given by the caller (DFRot); r1 is then ignored */
    const char *r1_name;    /* repliq.rot.r1 for a given matrix ("given" when NULL) */
    const char *info;       /* optional JSON written as repliq.rot.info (how R1 was made) */
} rq_rot_opts;

/* Rotate the model file in (GGUF, any tensor types) and write the rotated f32
 * GGUF to out. Holds the f32 output in memory until written (like convert).
 * Progress on stderr when verbose. */
int rq_rotate_file(const char *in, const char *out, const rq_rot_opts *o, bool verbose);

#endif
