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
 * (fnmatch globs over GGUF tensor names, as recipe overrides) taken from b. Refuses,
 * with a message naming what differs, files of different models (architecture,
 * dimensions, rotation keys), different activation or KV settings (repliq.act.*,
 * repliq.kv.*), different tensor names, and a pattern that matches no tensor. The
 * result is loaded block by block before it replaces out (an MLP whose three
 * matrices would disagree on their paths is refused); nothing is left on failure.
 * Metadata is a's, plus repliq.mix.{a,b,a_sha256,b_sha256,from_b,n_from_b} and
 * b's recipe as repliq.mix.b_recipe. */
int rq_mix(const char *a, const char *b, const char *const *pats, int n_pat, const char *out, rq_mix_report *rep);

#endif
