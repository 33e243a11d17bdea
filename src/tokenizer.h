/* tokenizer.h - byte-level BPE tokenizer read from a GGUF file's tokenizer.ggml.*
 * keys, giving the same token ids as llama.cpp (add_special=true, parse_special=false). */
#ifndef RQ_TOKENIZER_H
#define RQ_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct rq_tokenizer rq_tokenizer;

/* Build a tokenizer from tokenizer.ggml.{model,pre,tokens,token_type,merges,
 * bos_token_id,eos_token_id,add_bos_token,add_eos_token}. Only model "gpt2"
 * (byte-level BPE) is supported. The tokenizer copies what it needs: g may be
 * closed afterwards. */
int rq_tokenizer_from_gguf(const rq_gguf *g, rq_tokenizer **out);
void rq_tokenizer_free(rq_tokenizer *t);

/* Tokenize text[0..len) (UTF-8; invalid UTF-8 is refused with its byte offset).
 * add_special: add BOS when tokenizer.ggml.add_bos_token says so (and EOS when
 * add_eos_token does). Control tokens written in the text are not parsed;
 * user-defined tokens are, as in llama.cpp. *ids is allocated (free() it). */
int rq_tokenize(const rq_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                size_t *n_ids);

int32_t rq_tokenizer_n_vocab(const rq_tokenizer *t);
/* BOS / EOS ids: the file's keys, else llama.cpp's default for BPE (11); -1 if
 * that is outside the vocabulary. */
int32_t rq_tokenizer_bos(const rq_tokenizer *t);
int32_t rq_tokenizer_eos(const rq_tokenizer *t);
bool rq_tokenizer_adds_bos(const rq_tokenizer *t);
const char *rq_tokenizer_pre(const rq_tokenizer *t); /* tokenizer.ggml.pre in effect */

/* The bytes token id stands for (byte-level decoded; control and user-defined
 * tokens give their text). Writes at most cap bytes, no terminating NUL, and
 * returns the full length (so a return > cap means "retry with a bigger buffer"),
 * or -1 for an id outside the vocabulary. */
int rq_token_to_bytes(const rq_tokenizer *t, int32_t id, char *buf, size_t cap);

/* ---- pre-tokenizer (tokenizer_pretok.c) ------------------------------------
 * Splits text into the words BPE runs on, with the regular expressions llama.cpp
 * uses for a tokenizer.ggml.pre value. Exposed for the tests. */

typedef struct rq_pretok rq_pretok;

typedef struct {
    size_t off, len; /* bytes */
} rq_span;

/* Fails with the list of supported names when pre is unknown. */
int rq_pretok_new(const char *pre, rq_pretok **out);
void rq_pretok_free(rq_pretok *p);
/* Flags llama.cpp attaches to a pre-tokenizer: whole words found in the vocabulary
 * skip the merges; BOS added when tokenizer.ggml.add_bos_token is absent. */
bool rq_pretok_ignore_merges(const rq_pretok *p);
bool rq_pretok_default_add_bos(const rq_pretok *p);
const char *rq_pretok_name(const rq_pretok *p);
/* Split text[0..len), which must be valid UTF-8, into words: *spans is allocated
 * (free() it) and covers the text in order without gaps. */
int rq_pretok_split(const rq_pretok *p, const char *text, size_t len, rq_span **spans, size_t *n_spans);

/* First invalid UTF-8 byte offset in s[0..len), or len when s is valid (strict:
 * no overlong forms, surrogates or code points above U+10FFFF). */
size_t rq_utf8_check(const char *s, size_t len);

#endif
