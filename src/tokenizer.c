/* tokenizer.c - byte-level BPE (tokenizer.ggml.model = "gpt2") with llama.cpp's
 * rules: vocabulary and merges from GGUF, user-defined tokens, merge loop, bytes. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
    TT_UNDEFINED = 0,
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6
};

/* ---- string -> int32 hash map over a byte pool (open addressing) ------------ */

typedef struct {
    uint64_t hash;
    uint32_t off, len; /* key in the pool */
    int32_t val;
    int32_t aux; /* merges: where the pair splits (length of the left part) */
} map_entry;

typedef struct {
    map_entry *e; /* len == UINT32_MAX marks an empty slot */
    size_t mask;
    const char *pool;
} str_map;

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

static void map_init(str_map *m, size_t n_keys, const char *pool) {
    size_t cap = 16;
    while (cap < 2 * n_keys) cap *= 2;
    m->e = rq_malloc(cap * sizeof *m->e);
    for (size_t i = 0; i < cap; i++) m->e[i].len = UINT32_MAX;
    m->mask = cap - 1;
    m->pool = pool;
}

/* Slot holding key (a, b) split as a ++ sep ++ b (sep may be 0 = none), or the empty slot where it goes. */
static map_entry *map_slot(const str_map *m, uint64_t h, const char *a, size_t na, char sep, const char *b,
                           size_t nb) {
    size_t n = na + (sep ? 1 : 0) + nb;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        map_entry *e = &m->e[i];
        if (e->len == UINT32_MAX) return e;
        if (e->hash != h || e->len != n) continue;
        const char *k = m->pool + e->off;
        if (memcmp(k, a, na) || (sep && k[na] != sep) || memcmp(k + na + (sep ? 1 : 0), b, nb)) continue;
        return e;
    }
}

static const map_entry *map_get(const str_map *m, const char *s, size_t n) {
    const map_entry *e = map_slot(m, fnv1a(FNV_INIT, s, n), s, n, 0, "", 0);
    return e->len == UINT32_MAX ? NULL : e;
}

/* ---- the tokenizer ---------------------------------------------------------- */

struct rq_tokenizer {
    int32_t n_vocab;
    char *text;         /* all token texts, back to back */
    uint32_t *text_off; /* [n_vocab + 1] */
    uint8_t *type;      /* TT_*, after llama.cpp's overrides by name */
    str_map tokens;     /* text -> id (the last id wins, as in llama.cpp) */
    char *merge_text;   /* merge lines "left right", back to back */
    str_map merges;     /* "left right" -> rank (the first line wins) */
    rq_pretok *pre;
    int32_t bos, eos; /* -1: none */
    bool add_bos, add_eos, ignore_merges;
    int32_t *user; /* user-defined token ids, longest text first */
    size_t n_user;
    /* GPT-2 byte-level mapping: each byte is a code point, written in UTF-8 */
    char byte_utf8[256][2];
    uint8_t byte_utf8_len[256];
    int16_t cp_byte[324]; /* code point -> byte, -1 when none; the mapping stays below U+0144 */
};

static void byte_map_init(rq_tokenizer *t) {
    /* Printable Latin-1 bytes stand for themselves; the other 68 take U+0100.. in byte order. */
    int next = 256;
    for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = keep ? b : next++;
        t->cp_byte[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->byte_utf8[b][0] = (char)cp;
            t->byte_utf8_len[b] = 1;
        } else {
            t->byte_utf8[b][0] = (char)(0xC0 | (cp >> 6));
            t->byte_utf8[b][1] = (char)(0x80 | (cp & 0x3F));
            t->byte_utf8_len[b] = 2;
        }
    }
}

static const char *tok_text(const rq_tokenizer *t, int32_t id, size_t *n) {
    *n = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}

static int32_t token_id(const rq_tokenizer *t, const char *s, size_t n) {
    const map_entry *e = map_get(&t->tokens, s, n);
    return e ? e->val : -1;
}

static int32_t merge_rank(const rq_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = fnv1a(fnv1a(fnv1a(FNV_INIT, a, na), " ", 1), b, nb);
    const map_entry *e = map_slot(&t->merges, h, a, na, ' ', b, nb);
    return e->len != UINT32_MAX && e->aux == (int32_t)na ? e->val : -1;
}

/* Token names llama.cpp 0.3.16 forces to control type whatever the file says, so
 * they are never cut out of plain text: end-of-generation names always, and the
 * names it looks for to find a role's token when the file's key for the role is
 * absent. (It stops at the first name found for a role, in hash order; this
 * forces them all, which differs only for a vocabulary holding two of them.) */
#define FW "\xe2\x96\x81"                       /* U+2581, SentencePiece's space */
#define FB(x) "<\xef\xbd\x9c" x "\xef\xbd\x9c>" /* U+FF5C bars, DeepSeek style */
static const char *const EOG_NAMES[] = {
    "<|eot_id|>",      "<|im_end|>",         "<|end|>",    "<|return|>", "<|call|>",
    "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>", "<EOT>",      "_<EOT>",
    "<|end_of_text|>", "<end_of_utterance>", NULL};
static const struct {
    const char *key, *old_key;
    const char *names[8];
} ROLE_NAMES[] = {
    {"tokenizer.ggml.eot_token_id", NULL, {FB("end" FW "of" FW "sentence"), NULL}},
    {"tokenizer.ggml.fim_pre_token_id",
     "tokenizer.ggml.prefix_token_id",
     {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", FB("fim" FW "begin"), "<PRE>", FW "<PRE>",
      "<|code_prefix|>", NULL}},
    {"tokenizer.ggml.fim_suf_token_id",
     "tokenizer.ggml.suffix_token_id",
     {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", FB("fim" FW "hole"), "<SUF>", FW "<SUF>",
      "<|code_suffix|>", NULL}},
    {"tokenizer.ggml.fim_mid_token_id",
     "tokenizer.ggml.middle_token_id",
     {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", FB("fim" FW "end"), "<MID>", FW "<MID>",
      "<|code_middle|>", NULL}},
    {"tokenizer.ggml.fim_pad_token_id", NULL, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", NULL}},
    {"tokenizer.ggml.fim_rep_token_id",
     NULL,
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL}},
    {"tokenizer.ggml.fim_sep_token_id", NULL, {"<|file_sep|>", NULL}},
};
/* ... and these (gpt-oss) to user-defined. */
static const char *const USER_NAMES[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

static void force_type(rq_tokenizer *t, const char *const *names, uint8_t type) {
    for (; *names; names++) {
        int32_t id = token_id(t, *names, strlen(*names));
        if (id >= 0) t->type[id] = type;
    }
}

static bool has_role_key(const rq_gguf *g, const char *key, int32_t n_vocab) {
    int64_t v;
    return key && rq_gguf_get_int(g, key, &v) == 0 && v >= 0 && v < n_vocab;
}

static void apply_name_overrides(rq_tokenizer *t, const rq_gguf *g) {
    for (size_t r = 0; r < sizeof ROLE_NAMES / sizeof *ROLE_NAMES; r++)
        if (!has_role_key(g, ROLE_NAMES[r].key, t->n_vocab) &&
            !has_role_key(g, ROLE_NAMES[r].old_key, t->n_vocab))
            force_type(t, ROLE_NAMES[r].names, TT_CONTROL);
    force_type(t, EOG_NAMES, TT_CONTROL);
    force_type(t, USER_NAMES, TT_USER_DEFINED);
    /* o200k_harmony: with <|return|> and <|call|> present, <|end|> is plain user-defined text */
    static const char *const END[] = {"<|end|>", NULL};
    if (token_id(t, "<|return|>", 10) >= 0 && token_id(t, "<|call|>", 8) >= 0)
        force_type(t, END, TT_USER_DEFINED);
}

static int cmp_user(const void *a, const void *b, void *ctx) {
    const rq_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t nx, ny;
    tok_text(t, x, &nx);
    tok_text(t, y, &ny);
    if (nx != ny) return nx > ny ? -1 : 1;
    return (x > y) - (x < y);
}

static int load_vocab(rq_tokenizer *t, const rq_gguf *g) {
    uint64_t n;
    const rq_str *s;
    int rc = rq_gguf_get_strs(g, "tokenizer.ggml.tokens", &n, &s);
    if (rc) return rc < 0 ? rc : rq_fail("tokenizer.ggml.tokens is missing; the file has no vocabulary");
    if (n == 0 || n > INT32_MAX)
        return rq_fail("tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
    t->n_vocab = (int32_t)n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += s[i].len ? s[i].len : 24;
    if (total > UINT32_MAX) return rq_fail("tokenizer.ggml.tokens is too large (over 4 GiB of text)");
    t->text = rq_malloc(total + 1);
    t->text_off = rq_malloc((n + 1) * sizeof *t->text_off);
    map_init(&t->tokens, n, t->text);
    size_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        t->text_off[i] = (uint32_t)at;
        if (s[i].len) {
            memcpy(t->text + at, s[i].ptr, s[i].len);
            at += s[i].len;
        } else { /* llama.cpp names empty tokens so they cannot collide */
            at += (size_t)snprintf(t->text + at, 25, "[EMPTY_%llu]", (unsigned long long)i);
        }
        size_t len = at - t->text_off[i];
        map_entry *e = map_slot(&t->tokens, fnv1a(FNV_INIT, t->text + t->text_off[i], len),
                                t->text + t->text_off[i], len, 0, "", 0);
        *e = (map_entry){fnv1a(FNV_INIT, t->text + t->text_off[i], len), t->text_off[i], (uint32_t)len,
                         (int32_t)i, 0};
    }
    t->text_off[n] = (uint32_t)at;

    t->type = rq_malloc(n);
    memset(t->type, TT_NORMAL, n);
    uint64_t nt;
    const void *types;
    rc = rq_gguf_get_arr(g, "tokenizer.ggml.token_type", RQ_GGUF_INT32, &nt, &types);
    if (rc < 0) return rc;
    if (rc == 0) {
        if (nt != n)
            return rq_fail(
                "tokenizer.ggml.token_type has %llu entries for %llu tokens; the file is inconsistent",
                (unsigned long long)nt, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, (const char *)types + 4 * i, 4);
            t->type[i] = v >= TT_UNDEFINED && v <= TT_BYTE ? (uint8_t)v : TT_UNDEFINED;
        }
    }
    apply_name_overrides(t, g);

    t->user = rq_malloc(n * sizeof *t->user);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TT_USER_DEFINED) t->user[t->n_user++] = i;
    qsort_r(t->user, t->n_user, sizeof *t->user, cmp_user, t);
    return 0;
}

static int load_merges(rq_tokenizer *t, const rq_gguf *g) {
    uint64_t n;
    const rq_str *s;
    int rc = rq_gguf_get_strs(g, "tokenizer.ggml.merges", &n, &s);
    if (rc)
        return rc < 0 ? rc : rq_fail("tokenizer.ggml.merges is missing; a BPE vocabulary needs its merges");
    if (n > INT32_MAX) return rq_fail("tokenizer.ggml.merges has too many entries");
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += s[i].len;
    if (total > UINT32_MAX) return rq_fail("tokenizer.ggml.merges is too large (over 4 GiB of text)");
    t->merge_text = rq_malloc(total + 1);
    map_init(&t->merges, n, t->merge_text);
    size_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *m = s[i].ptr;
        size_t len = s[i].len, sp = 1;
        while (sp < len && m[sp] != ' ') sp++;
        if (sp >= len) continue; /* no separator: llama.cpp files it under an empty pair nothing looks up */
        memcpy(t->merge_text + at, m, len);
        uint64_t h = fnv1a(FNV_INIT, m, len);
        map_entry *e = map_slot(&t->merges, h, m, len, 0, "", 0);
        if (e->len == UINT32_MAX) *e = (map_entry){h, (uint32_t)at, (uint32_t)len, (int32_t)i, (int32_t)sp};
        at += len;
    }
    return 0;
}

/* A special token id: the GGUF key when present and in range, else llama.cpp's default. */
static int special_id(const rq_gguf *g, const char *key, int32_t dflt, int32_t n_vocab, int32_t *out) {
    int64_t v;
    int rc = rq_gguf_get_int(g, key, &v);
    if (rc < 0) return rc;
    *out = rc == 0 && v >= 0 && v < n_vocab ? (int32_t)v : dflt;
    if (*out >= n_vocab) *out = -1;
    return 0;
}

int rq_tokenizer_from_gguf(const rq_gguf *g, rq_tokenizer **out) {
    rq_str s;
    int rc = rq_gguf_get_str(g, "tokenizer.ggml.model", &s);
    if (rc)
        return rc < 0 ? rc
                      : rq_fail("%s: tokenizer.ggml.model is missing; the file has no tokenizer", g->path);
    if (!rq_str_eq(s, "gpt2"))
        return rq_fail("%s: tokenizer model '%.*s' not supported (supported: gpt2, byte-level BPE); use a "
                       "model with a byte-level BPE vocabulary",
                       g->path, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    char pre[128] = "default"; /* llama.cpp's choice (with a warning) when the key is missing or empty */
    rc = rq_gguf_get_str(g, "tokenizer.ggml.pre", &s);
    if (rc < 0) return rc;
    if (rc == 0 && s.len) snprintf(pre, sizeof pre, "%.*s", (int)(s.len > 127 ? 127 : s.len), s.ptr);

    rq_tokenizer *t = rq_calloc(1, sizeof *t);
    byte_map_init(t);
    if (rq_pretok_new(pre, &t->pre) || load_vocab(t, g) || load_merges(t, g)) goto fail;
    /* llama.cpp's defaults for BPE vocabularies, then the file's keys */
    if (special_id(g, "tokenizer.ggml.bos_token_id", 11, t->n_vocab, &t->bos) ||
        special_id(g, "tokenizer.ggml.eos_token_id", 11, t->n_vocab, &t->eos))
        goto fail;
    t->ignore_merges = rq_pretok_ignore_merges(t->pre);
    t->add_bos = rq_pretok_default_add_bos(t->pre);
    if (rq_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos) < 0) goto fail;
    if (rq_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos) < 0) goto fail;
    if ((t->add_bos && t->bos < 0) || (t->add_eos && t->eos < 0)) {
        bool b = t->add_bos && t->bos < 0;
        rq_fail("the tokenizer asks to add %s but has no valid %s token id; fix tokenizer.ggml.%s_token_id",
                b ? "BOS" : "EOS", b ? "BOS" : "EOS", b ? "bos" : "eos");
        goto fail;
    }
    *out = t;
    return 0;
fail:
    rq_tokenizer_free(t);
    return rq_fail_ctx("%s: tokenizer", g->path);
}

void rq_tokenizer_free(rq_tokenizer *t) {
    if (!t) return;
    rq_pretok_free(t->pre);
    free(t->text);
    free(t->text_off);
    free(t->type);
    free(t->tokens.e);
    free(t->merge_text);
    free(t->merges.e);
    free(t->user);
    free(t);
}

int32_t rq_tokenizer_n_vocab(const rq_tokenizer *t) { return t->n_vocab; }
int32_t rq_tokenizer_bos(const rq_tokenizer *t) { return t->bos; }
int32_t rq_tokenizer_eos(const rq_tokenizer *t) { return t->eos; }
bool rq_tokenizer_adds_bos(const rq_tokenizer *t) { return t->add_bos; }
const char *rq_tokenizer_pre(const rq_tokenizer *t) { return rq_pretok_name(t->pre); }

/* ---- output and scratch ------------------------------------------------------ */

typedef struct {
    int32_t *v;
    size_t n, cap;
} id_vec;

static void push_id(id_vec *o, int32_t id) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 1024;
        o->v = rq_realloc(o->v, o->cap * sizeof *o->v);
    }
    o->v[o->n++] = id;
}

typedef struct {
    uint32_t off, n; /* in the encoded word; n == 0 once merged into the left neighbour */
    int32_t prev, next;
} symbol;

typedef struct {
    int32_t rank, left, right;
    uint32_t n_left, n_right; /* sizes when queued: a changed size means the pair is stale */
} bigram;

typedef struct {
    char *enc; /* the word, each byte written as its byte-level code point */
    size_t enc_cap;
    symbol *sym;
    size_t sym_cap;
    bigram *heap;
    size_t heap_n, heap_cap;
} bpe_scratch;

/* Min-heap on (rank, left): the lowest rank merges first, the leftmost among equals. */
static bool bigram_before(const bigram *a, const bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_scratch *s, bigram b) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 64;
        s->heap = rq_realloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
}

static bigram heap_pop(bpe_scratch *s) {
    bigram top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void queue_pair(const rq_tokenizer *t, bpe_scratch *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const symbol *a = &s->sym[l], *b = &s->sym[r];
    int32_t rank = merge_rank(t, s->enc + a->off, a->n, s->enc + b->off, b->n);
    if (rank >= 0) heap_push(s, (bigram){rank, l, r, a->n, b->n});
}

/* One pre-tokenized word (raw bytes) to ids. */
static void bpe_word(const rq_tokenizer *t, bpe_scratch *s, const unsigned char *w, size_t n, id_vec *out) {
    if (n == 0) return;
    if (2 * n > s->enc_cap) {
        s->enc_cap = 4 * n;
        s->enc = rq_realloc(s->enc, s->enc_cap);
    }
    if (n > s->sym_cap) {
        s->sym_cap = 2 * n;
        s->sym = rq_realloc(s->sym, s->sym_cap * sizeof *s->sym);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        s->sym[i] =
            (symbol){(uint32_t)m, t->byte_utf8_len[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
        memcpy(s->enc + m, t->byte_utf8[w[i]], t->byte_utf8_len[w[i]]);
        m += t->byte_utf8_len[w[i]];
    }
    if (t->ignore_merges) {
        int32_t id = token_id(t, s->enc, m);
        if (id >= 0) {
            push_id(out, id);
            return;
        }
    }
    s->heap_n = 0;
    for (size_t i = 1; i < n; i++) queue_pair(t, s, (int32_t)i - 1, (int32_t)i);
    while (s->heap_n) {
        bigram b = heap_pop(s);
        symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n != b.n_left || r->n != b.n_right) continue; /* one side changed since it was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        queue_pair(t, s, l->prev, b.left);
        queue_pair(t, s, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const symbol *y = &s->sym[i];
        int32_t id = token_id(t, s->enc + y->off, y->n);
        if (id >= 0) {
            push_id(out, id);
            continue;
        }
        /* Not in the vocabulary: llama.cpp looks each byte of the encoded text up on its own. */
        for (uint32_t k = 0; k < y->n; k++) {
            id = token_id(t, s->enc + y->off + k, 1);
            if (id >= 0) push_id(out, id);
        }
    }
}

static int tokenize_raw(const rq_tokenizer *t, const char *text, size_t off, size_t len, bpe_scratch *s,
                        id_vec *out) {
    rq_span *w;
    size_t nw;
    if (rq_pretok_split(t->pre, text + off, len, &w, &nw)) return -1;
    for (size_t i = 0; i < nw; i++)
        bpe_word(t, s, (const unsigned char *)text + off + w[i].off, w[i].len, out);
    free(w);
    return 0;
}

typedef struct {
    size_t off, len;
    int32_t id; /* -1: raw text */
} fragment;

typedef struct {
    fragment *v;
    size_t n, cap;
} frag_vec;

static void push_frag(frag_vec *f, size_t off, size_t len, int32_t id) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        f->v = rq_realloc(f->v, f->cap * sizeof *f->v);
    }
    f->v[f->n++] = (fragment){off, len, id};
}

/* Cut user-defined tokens out of the raw text, longest first, as llama.cpp does
 * before pre-tokenizing (control tokens stay text: parse_special is false). */
static frag_vec partition(const rq_tokenizer *t, const char *text, size_t len) {
    frag_vec f = {0}, g = {0};
    push_frag(&f, 0, len, -1);
    for (size_t u = 0; u < t->n_user; u++) {
        size_t tn;
        const char *tt = tok_text(t, t->user[u], &tn);
        g.n = 0;
        for (size_t i = 0; i < f.n; i++) {
            if (f.v[i].id >= 0) {
                push_frag(&g, f.v[i].off, f.v[i].len, f.v[i].id);
                continue;
            }
            size_t at = f.v[i].off, end = f.v[i].off + f.v[i].len;
            for (;;) {
                const char *hit = memmem(text + at, end - at, tt, tn);
                size_t hit_at = hit ? (size_t)(hit - text) : end;
                if (hit_at > at) push_frag(&g, at, hit_at - at, -1);
                if (!hit) break;
                push_frag(&g, hit_at, tn, t->user[u]);
                at = hit_at + tn;
            }
        }
        frag_vec tmp = f;
        f = g;
        g = tmp;
    }
    free(g.v);
    return f;
}

int rq_tokenize(const rq_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                size_t *n_ids) {
    size_t bad = rq_utf8_check(text, len);
    if (bad < len)
        return rq_fail("tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02x); the tokenizer takes UTF-8 "
                       "text: convert the input (e.g. iconv -t UTF-8) or remove the bad bytes",
                       bad, (unsigned char)text[bad]);
    id_vec out = {0};
    bpe_scratch s = {0};
    int rc = 0;
    if (add_special && t->add_bos) push_id(&out, t->bos);
    if (len) {
        frag_vec f = partition(t, text, len);
        for (size_t i = 0; i < f.n && rc == 0; i++) {
            if (f.v[i].id >= 0)
                push_id(&out, f.v[i].id);
            else
                rc = tokenize_raw(t, text, f.v[i].off, f.v[i].len, &s, &out);
        }
        free(f.v);
    }
    if (add_special && t->add_eos) push_id(&out, t->eos);
    free(s.enc);
    free(s.sym);
    free(s.heap);
    if (rc) {
        free(out.v);
        return rc;
    }
    *ids = out.v ? out.v : rq_malloc(sizeof(int32_t));
    *n_ids = out.n;
    return 0;
}

int rq_token_to_bytes(const rq_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab)
        return rq_fail("token id %d is outside the vocabulary [0, %d)", (int)id, (int)t->n_vocab);
    size_t n;
    const unsigned char *s = (const unsigned char *)tok_text(t, id, &n);
    if (t->type[id] == TT_CONTROL || t->type[id] == TT_USER_DEFINED || t->type[id] == TT_UNKNOWN) {
        if (cap) memcpy(buf, s, n < cap ? n : cap);
        return (int)n;
    }
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        /* each code point of the text stands for one byte; any other passes through as it is */
        size_t k = s[i] < 0x80 ? 1 : s[i] < 0xE0 ? 2 : s[i] < 0xF0 ? 3 : 4;
        if (k > n - i) k = n - i;
        uint32_t cp = k == 1 ? s[i] : k == 2 ? ((s[i] & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu) : 0xFFFF;
        if (cp < 324 && t->cp_byte[cp] >= 0) {
            if (w < cap) buf[w] = (char)t->cp_byte[cp];
            w++;
        } else {
            for (size_t j = 0; j < k; j++, w++)
                if (w < cap) buf[w] = (char)s[i + j];
        }
        i += k;
    }
    return (int)w;
}
