/* mix.h - a file made of two quantized files of one model: every tensor from A,
 * except those whose names match the given patterns, taken from B. It attributes
 * a difference between two files to the layers that carry it (evaluate the mix
 * with repliq ppl and pair its per-token NLL with A's and B's). */
#ifndef RQ_MIX_H
#define RQ_MIX_H

#include <stdint.h>

typedef struct {
    int n_tensors; /* in the output */
    int n_from_b;  /* of them taken from B */
} rq_mix_report;

/* Writes out from a and b (paths) with the tensors matching any of pats[0..n_pat)
 * (fnmatch globs over GGUF tensor names, as recipe overrides) taken from b. Either
 * may be the (rotated) model the other was quantized from: its layers then show what
 * quantizing them costs. Refuses, with a message naming what differs, files of
 * different models (architecture, dimensions, rotation keys), different activation
 * or KV settings (repliq.act.*, repliq.kv.*; absent = none), different tensor names,
 * a pattern that matches no tensor, and an MLP run as paths ("combine": "mlp") in
 * either file whose gate, up and down would come from different files. The result
 * is written beside out, loaded block by block, then renamed to out; nothing is left
 * on failure and an existing out is untouched. Metadata is a's (its recipe and
 * calibration keys describe a's tensors only; a's own repliq.mix.* keys, if a is a
 * mix, are replaced: a_sha256 names it), plus repliq.mix.{a,b,a_sha256,b_sha256,
 * from_b,n_from_b} and b's recipe, when it has one, as repliq.mix.b_recipe. */
int rq_mix(const char *a, const char *b, const char *const *pats, int n_pat, const char *out, rq_mix_report *rep);

#endif
