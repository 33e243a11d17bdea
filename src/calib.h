/* calib.h - calibration text: the documents of a JSON-lines file (optionally
 * xz-compressed, one {"text": ...} per line), shuffled with a seed, joined with
 * "\n\n", tokenized, and cut into n consecutive windows of L tokens. */
#ifndef RQ_CALIB_H
#define RQ_CALIB_H

#include <stddef.h>
#include <stdint.h>

struct rq_tokenizer;

typedef struct {
    int32_t *tokens; /* [n, len] */
    int n, len;
    uint64_t seed;
    int n_docs;      /* documents in the file */
    int docs_used;   /* documents (from the shuffled order) the windows draw on */
    char sha256[65]; /* of the file as stored (compressed bytes when .xz) */
    char *path;
} rq_calib;

/* Fails with a clear message if the file is missing, malformed (line N), or holds
 * too little text for n * len tokens. No BOS is added. */
int rq_calib_load(const char *path, const struct rq_tokenizer *tok, int n, int len, uint64_t seed, rq_calib *out);
void rq_calib_free(rq_calib *c);

/* The joined text of the shuffled documents (all of them), for tools that take
 * plain text (llama-imatrix); malloc'd, *len set. */
int rq_calib_text(const char *path, uint64_t seed, char **text, size_t *len);

/* sha256 of a file, lowercase hex. */
int rq_sha256_file(const char *path, char out[65]);

#endif
