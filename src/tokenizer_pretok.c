/* tokenizer_pretok.c - the pre-tokenizer of byte-level BPE: splits text into words
 * with PCRE2 versions of the regular expressions llama.cpp uses per tokenizer.ggml.pre. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

/* How these patterns reproduce llama.cpp (src/unicode.cpp), which has no PCRE:
 * - It splits in stages: each regex runs inside the pieces the previous one made
 *   (so a lookahead never sees past a piece), and both the matches and the text
 *   between them become pieces. rq_pretok_split does the same.
 * - Its \s is Unicode White_Space (ASCII \t\n\v\f\r and space included), not
 *   PCRE2's UCP \s, which adds U+180E; hence the explicit class WS.
 * - Its \p{L}, \p{N}, \p{P} come from its own tables (Unicode 15.1 in 0.3.16).
 *   PCRE2 10.42 knows Unicode 14: about 5,100 code points added since (CJK
 *   extension H, Kawi, ...) are letters there and unassigned here, so text using
 *   them splits differently. Nothing else differs.
 * - The GPT-2 and llama3 expressions run through hand-written matchers there. For
 *   GPT-2 that matcher ends with a plain \s+ when \s+(?!\S) fails (a lone
 *   whitespace before a non-space), which the GPT-2 expression itself lacks; the
 *   trailing |\s+ below stands for it. The other expressions run through
 *   std::regex on a copy of the text where each code point is replaced by a byte
 *   standing for its category; that is equivalent to matching Unicode classes. */
#define WS "\\p{White_Space}"
#define CONTRACTIONS_CI "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
                              "|[" WS "]+(?![^" WS "])|[" WS "]+";
static const char RE_LLAMA3[] =
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])"
                    "|[" WS "]+";
static const char RE_QWEN2[] =
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])"
                    "|[" WS "]+";
static const char RE_DIGIT[] = "\\p{N}";
static const char RE_DEFAULT_PUNCT[] = "[\\p{P}\\$\\+<=>\\^~\\|]+";
static const char RE_DEFAULT_NUMS[] = "\\p{N}+";
static const char RE_DEFAULT_3DIGITS[] = "[0-9][0-9][0-9]";

#define MAX_STAGES 4

typedef struct {
    const char *const *names; /* NULL-terminated: tokenizer.ggml.pre values */
    const char *stages[MAX_STAGES];
    bool ignore_merges;
    bool add_bos;
} pretok_kind;

/* The tokenizer.ggml.pre values llama.cpp 0.3.16 maps to each expression set, less
 * those that also change special-token handling (jina-v2 <mask>, chatglm BOS),
 * which are not implemented. */
static const char *const N_DEFAULT[] = {"default", NULL};
static const char *const N_GPT2[] = {"gpt-2", "phi-2", "gigachat", "a.x-4.0", "mellum", "mpt",
                                     "olmo",  "jais",  "trillion", "exaone4", NULL};
static const char *const N_DIGITS_GPT2[] = {"smollm",    "starcoder", "refact",     "command-r",
                                            "codeshell", "exaone",    "minerva-7b", NULL};
static const char *const N_LLAMA3[] = {"llama3",  "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
                                       "pixtral", "midm-2.0", "lfm2",      NULL};
static const char *const N_LLAMA3_MERGING[] = {"dbrx", "smaug-bpe", NULL};
static const char *const N_QWEN2[] = {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", NULL};

static const pretok_kind KINDS[] = {
    {N_DEFAULT, {RE_DEFAULT_PUNCT, RE_GPT2, RE_DEFAULT_NUMS, RE_DEFAULT_3DIGITS}, false, false},
    {N_GPT2, {RE_GPT2}, false, false},
    {N_DIGITS_GPT2, {RE_DIGIT, RE_GPT2}, false, false},
    {N_LLAMA3, {RE_LLAMA3}, true, true},
    {N_LLAMA3_MERGING, {RE_LLAMA3}, false, false},
    {N_QWEN2, {RE_QWEN2}, false, false},
};

struct rq_pretok {
    const pretok_kind *kind;
    const char *name;
    int n_stages;
    pcre2_code *re[MAX_STAGES];
};

static void supported_list(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++)
        for (const char *const *s = KINDS[k].names; *s && n < cap; s++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", *s);
}

int rq_pretok_new(const char *pre, rq_pretok **out) {
    const pretok_kind *kind = NULL;
    const char *name = NULL;
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0] && !kind; k++)
        for (const char *const *s = KINDS[k].names; *s; s++)
            if (!strcmp(*s, pre)) {
                kind = &KINDS[k];
                name = *s;
                break;
            }
    if (!kind) {
        char list[512];
        supported_list(list, sizeof list);
        return rq_fail("tokenizer pre-split '%s' not supported (supported: %s); use a model whose "
                       "tokenizer.ggml.pre is one of these, or add its expressions to tokenizer_pretok.c",
                       pre, list);
    }
    rq_pretok *p = rq_calloc(1, sizeof *p);
    p->kind = kind;
    p->name = name;
    for (int i = 0; i < MAX_STAGES && kind->stages[i]; i++) {
        int err;
        PCRE2_SIZE at;
        p->re[i] = pcre2_compile((PCRE2_SPTR)kind->stages[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &at, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            rq_pretok_free(p);
            return rq_fail("pre-tokenizer '%s': PCRE2 rejects expression %d at offset %zu: %s (needs "
                           "libpcre2-8 >= 10.40 with Unicode support)",
                           pre, i, (size_t)at, (const char *)msg);
        }
        /* JIT is only speed: without it pcre2_match interprets the same pattern. */
        pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
        p->n_stages = i + 1;
    }
    *out = p;
    return 0;
}

void rq_pretok_free(rq_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_stages; i++) pcre2_code_free(p->re[i]);
    free(p);
}

bool rq_pretok_ignore_merges(const rq_pretok *p) { return p->kind->ignore_merges; }
bool rq_pretok_default_add_bos(const rq_pretok *p) { return p->kind->add_bos; }
const char *rq_pretok_name(const rq_pretok *p) { return p->name; }

typedef struct {
    rq_span *v;
    size_t n, cap;
} span_vec;

static void push_span(span_vec *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = rq_realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = (rq_span){off, len};
}

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* One stage inside one piece: matches and the gaps between them, in order. */
static int split_piece(const pcre2_code *re, const char *text, rq_span piece, pcre2_match_data *md,
                       pcre2_match_context *mc, span_vec *out) {
    const PCRE2_SPTR subj = (PCRE2_SPTR)(text + piece.off);
    size_t pos = 0, prev = 0;
    while (pos < piece.len) {
        int rc = pcre2_match(re, subj, piece.len, pos, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return rq_fail("pre-tokenizer: PCRE2 match failed at byte %zu: %s", piece.off + pos,
                           (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e == s) { /* no expression here matches empty; step over a code point if one ever does */
            pos = s + utf8_len(subj[s]);
            continue;
        }
        if (s > prev) push_span(out, piece.off + prev, s - prev);
        push_span(out, piece.off + s, e - s);
        prev = pos = e;
    }
    if (piece.len > prev) push_span(out, piece.off + prev, piece.len - prev);
    return 0;
}

int rq_pretok_split(const rq_pretok *p, const char *text, size_t len, rq_span **spans, size_t *n_spans) {
    span_vec cur = {0}, next = {0};
    if (len) push_span(&cur, 0, len);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_jit_stack *js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!md || !mc || !js) {
        fprintf(stderr, "repliq: out of memory creating PCRE2 match state\n");
        abort();
    }
    pcre2_jit_stack_assign(mc, NULL, js);
    int rc = 0;
    for (int st = 0; st < p->n_stages && rc == 0; st++) {
        next.n = 0;
        for (size_t i = 0; i < cur.n && rc == 0; i++)
            rc = split_piece(p->re[st], text, cur.v[i], md, mc, &next);
        span_vec t = cur;
        cur = next;
        next = t;
    }
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    free(next.v);
    if (rc) {
        free(cur.v);
        return rc;
    }
    *spans = cur.v;
    *n_spans = cur.n;
    return 0;
}

size_t rq_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF)
            n = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 4, cp = c & 0x07, min = 0x10000;
        else
            return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n;
    }
    return len;
}
