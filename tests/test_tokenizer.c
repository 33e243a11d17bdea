/* test_tokenizer.c - the BPE tokenizer against llama.cpp: golden ids for WikiText-2
 * (tests/fixtures/golden), hand cases (tests/fixtures/tokenizer), pre-tokenizer splits. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "rq_test.h"
#include "tokenizer.h"
#include "util.h"

#ifndef RQ_SOURCE_DIR
#define RQ_SOURCE_DIR "."
#endif

static const char *const MODELS[] = {"smollm2-135m", "qwen2.5-coder-1.5b"};
#define N_MODELS (sizeof MODELS / sizeof *MODELS)

/* Tokenizers are loaded once per model; NULL when the model is not cached. */
static rq_tokenizer *g_tok[N_MODELS];
static bool g_tried[N_MODELS];

static rq_tokenizer *model_tok(size_t m) {
    if (g_tried[m]) return g_tok[m];
    g_tried[m] = true;
    char file[256], buf[1024];
    snprintf(file, sizeof file, "%s.gguf", MODELS[m]);
    const char *path = rq_test_model(file, buf, sizeof buf);
    if (!path) return NULL;
    rq_gguf *g;
    if (rq_gguf_open(path, &g)) {
        printf("  %s\n", rq_error());
        return NULL;
    }
    if (rq_tokenizer_from_gguf(g, &g_tok[m])) printf("  %s\n", rq_error());
    rq_gguf_close(g);
    return g_tok[m];
}

/* ---- pre-tokenizer splits: llama.cpp's rules, by hand ------------------------- */

/* Words of text under pre, joined with '|'. */
static void split_str(const char *pre, const char *text, char *out, size_t cap) {
    rq_pretok *p;
    out[0] = 0;
    if (rq_pretok_new(pre, &p)) {
        snprintf(out, cap, "ERROR %s", rq_error());
        return;
    }
    rq_span *w;
    size_t n, at = 0;
    if (rq_pretok_split(p, text, strlen(text), &w, &n)) {
        snprintf(out, cap, "ERROR %s", rq_error());
    } else {
        for (size_t i = 0; i < n && at < cap; i++)
            at +=
                (size_t)snprintf(out + at, cap - at, "%s%.*s", i ? "|" : "", (int)w[i].len, text + w[i].off);
        free(w);
    }
    rq_pretok_free(p);
}

#define CHECK_SPLIT(pre, text, want)                                                                         \
    do {                                                                                                     \
        char got_[512];                                                                                      \
        split_str(pre, text, got_, sizeof got_);                                                             \
        CHECKF(!strcmp(got_, want), "%s: '%s' -> '%s', want '%s'", pre, text, got_, want);                   \
    } while (0)

static void test_pretok_splits(void) {
    /* digits: one per word in smollm (first stage) and qwen2, runs of three in llama3 */
    CHECK_SPLIT("smollm", "12345", "1|2|3|4|5");
    CHECK_SPLIT("qwen2", "12345", "1|2|3|4|5");
    CHECK_SPLIT("llama3", "12345", "123|45");
    CHECK_SPLIT("gpt-2", "a 12345", "a| 12345");
    /* smollm's second stage runs inside the pieces of the first: no lookahead past a digit */
    CHECK_SPLIT("smollm", "a  1", "a|  |1");
    CHECK_SPLIT("gpt-2", "a  1", "a| | 1");
    /* contractions: case-sensitive in GPT-2, not in qwen2 / llama3 */
    CHECK_SPLIT("smollm", "I'll DON'T", "I|'ll| DON|'|T");
    CHECK_SPLIT("qwen2", "I'll DON'T", "I|'ll| DON|'T");
    /* whitespace: \s+(?!\S) leaves the last space to the next word */
    CHECK_SPLIT("smollm", "   leading", "  | leading");
    CHECK_SPLIT("smollm", "end   ", "end|   ");
    CHECK_SPLIT("qwen2", "a\n\n b", "a|\n\n| b");
    CHECK_SPLIT("smollm", "a\n\n b", "a|\n\n| b");
    CHECK_SPLIT("qwen2", "x?!\n\ny", "x|?!\n\n|y");
    CHECK_SPLIT("smollm", "x?!\n\ny", "x|?!|\n|\n|y");
    /* U+180E is whitespace for PCRE2's \s but not for llama.cpp */
    CHECK_SPLIT("qwen2", "a \xe1\xa0\x8e", "a| \xe1\xa0\x8e");
    CHECK_SPLIT("default", "a, b 1234", "a|,| b| |123|4");

    rq_pretok *p;
    CHECK(rq_pretok_new("no-such-pre", &p) == -1);
    CHECK(strstr(rq_error(), "'no-such-pre' not supported") != NULL);
    CHECK(strstr(rq_error(), "smollm") != NULL && strstr(rq_error(), "qwen2") != NULL);
}

static void test_utf8_check(void) {
    CHECK(rq_utf8_check("abc", 3) == 3);
    CHECK(rq_utf8_check("a\xc3\xa9\xf0\x9f\x98\x80", 7) == 7);
    CHECK(rq_utf8_check("abc\xff", 4) == 3);
    CHECK(rq_utf8_check("\xc0\x80", 2) == 0);         /* overlong */
    CHECK(rq_utf8_check("a\xed\xa0\x80", 4) == 1);    /* surrogate */
    CHECK(rq_utf8_check("ab\xf0\x9f\x98", 5) == 2);   /* cut short */
    CHECK(rq_utf8_check("\xf4\x90\x80\x80", 4) == 0); /* above U+10FFFF */
}

/* ---- a synthetic vocabulary in an in-memory GGUF: runs without any model ------ */

typedef struct {
    unsigned char *b;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = 2 * (g->n + n);
        g->b = rq_realloc(g->b, g->cap);
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void put_u32(gbuf *g, uint32_t v) { put(g, &v, 4); } /* the tests run on little-endian hosts */
static void put_u64(gbuf *g, uint64_t v) { put(g, &v, 8); }
static void put_s(gbuf *g, const char *s) {
    put_u64(g, strlen(s));
    put(g, s, strlen(s));
}
static void kv_str(gbuf *g, const char *k, const char *v) {
    put_s(g, k), put_u32(g, RQ_GGUF_STRING), put_s(g, v), g->n_kv++;
}
static void kv_u32(gbuf *g, const char *k, uint32_t v) {
    put_s(g, k), put_u32(g, RQ_GGUF_UINT32), put_u32(g, v), g->n_kv++;
}
static void kv_bool(gbuf *g, const char *k, bool v) {
    unsigned char c = v;
    put_s(g, k), put_u32(g, RQ_GGUF_BOOL), put(g, &c, 1), g->n_kv++;
}
static void kv_strs(gbuf *g, const char *k, const char *const *v, size_t n) {
    put_s(g, k), put_u32(g, RQ_GGUF_ARRAY), put_u32(g, RQ_GGUF_STRING), put_u64(g, n), g->n_kv++;
    for (size_t i = 0; i < n; i++) put_s(g, v[i]);
}
static void kv_i32s(gbuf *g, const char *k, const int32_t *v, size_t n) {
    put_s(g, k), put_u32(g, RQ_GGUF_ARRAY), put_u32(g, RQ_GGUF_INT32), put_u64(g, n), g->n_kv++;
    put(g, v, 4 * n);
}

/* Byte-level texts: "\xc4\xa0" is U+0120, the code point standing for the space byte. */
static const char *const SYN_TOKENS[] = {"<s>",
                                         "a",
                                         "b",
                                         "c",
                                         "\xc4\xa0",
                                         "ab",
                                         "bc",
                                         "abc",
                                         "\xc4\xa0"
                                         "a",
                                         "<u>",
                                         "<c>",
                                         "<",
                                         ">",
                                         "ca"};
static const int32_t SYN_TYPES[] = {3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1, 1, 1};
static const char *const SYN_MERGES[] = {"b c", "a b", "a bc", "ab c", "\xc4\xa0 a"};

/* A GGUF holding only the synthetic tokenizer; model/pre NULL leave the key out. */
static rq_tokenizer *synth_tok(const char *model, const char *pre, int add_bos, gbuf *g) {
    gbuf kv = {0};
    if (model) kv_str(&kv, "tokenizer.ggml.model", model);
    if (pre) kv_str(&kv, "tokenizer.ggml.pre", pre);
    kv_strs(&kv, "tokenizer.ggml.tokens", SYN_TOKENS, sizeof SYN_TOKENS / sizeof *SYN_TOKENS);
    kv_i32s(&kv, "tokenizer.ggml.token_type", SYN_TYPES, sizeof SYN_TYPES / sizeof *SYN_TYPES);
    kv_strs(&kv, "tokenizer.ggml.merges", SYN_MERGES, sizeof SYN_MERGES / sizeof *SYN_MERGES);
    kv_u32(&kv, "tokenizer.ggml.bos_token_id", 0);
    if (add_bos >= 0) kv_bool(&kv, "tokenizer.ggml.add_bos_token", add_bos);
    *g = (gbuf){0};
    put(g, "GGUF", 4);
    put_u32(g, 3);
    put_u64(g, 0);
    put_u64(g, kv.n_kv);
    put(g, kv.b, kv.n);
    free(kv.b);
    rq_gguf *f;
    rq_tokenizer *t = NULL;
    if (rq_gguf_open_mem(g->b, g->n, "synthetic.gguf", &f)) return NULL;
    if (rq_tokenizer_from_gguf(f, &t)) t = NULL;
    rq_gguf_close(f);
    return t;
}

static bool ids_are(const rq_tokenizer *t, const char *text, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    if (rq_tokenize(t, text, strlen(text), true, &ids, &n)) return false;
    bool same = n == n_want && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!same) {
        printf("  '%s' ->", text);
        for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
        printf("\n");
    }
    free(ids);
    return same;
}
#define IDS_ARE(t, text, ...)                                                                                \
    ids_are(t, text, (const int32_t[]){__VA_ARGS__}, sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void test_synthetic_vocab(void) {
    gbuf g;
    rq_tokenizer *t = synth_tok("gpt2", "gpt-2", -1, &g);
    CHECKF(t != NULL, "%s", rq_error());
    if (t) {
        CHECK(!rq_tokenizer_adds_bos(t) && rq_tokenizer_bos(t) == 0 && rq_tokenizer_n_vocab(t) == 14);
        /* "b c" ranks before "a b": a+bc, then abc */
        CHECK(IDS_ARE(t, "abc", 7));
        /* "a b" ranks before "Ġ a"; the user-defined <u> is cut out, the control <c> is not */
        CHECK(IDS_ARE(t, "abc ab<u>c<c>", 7, 4, 5, 9, 3, 11, 3, 12));
        /* no "c a" merge: c, a; a byte with no token of its own is dropped, as llama.cpp does */
        CHECK(IDS_ARE(t, "ca", 3, 1));
        int32_t *ids;
        size_t n;
        CHECK(rq_tokenize(t, "d", 1, true, &ids, &n) == 0 && n == 0);
        free(ids);
        char b[8];
        CHECK(rq_token_to_bytes(t, 8, b, sizeof b) == 2 && !memcmp(b, " a", 2));
        CHECK(rq_token_to_bytes(t, 9, b, sizeof b) == 3 && !memcmp(b, "<u>", 3));
        CHECK(rq_token_to_bytes(t, 8, b, 1) == 2); /* too small: the length it needs */
        rq_tokenizer_free(t);
    }
    free(g.b);

    /* llama-bpe: BOS by default, and a whole word found in the vocabulary skips the merges */
    t = synth_tok("gpt2", "llama-bpe", -1, &g);
    CHECKF(t != NULL, "%s", rq_error());
    if (t) {
        CHECK(rq_tokenizer_adds_bos(t));
        CHECK(IDS_ARE(t, "ca", 0, 13));
        rq_tokenizer_free(t);
    }
    free(g.b);
    t = synth_tok("gpt2", "llama-bpe", 0, &g); /* the file's add_bos_token wins */
    CHECK(t && !rq_tokenizer_adds_bos(t));
    rq_tokenizer_free(t);
    free(g.b);
    t = synth_tok("gpt2", NULL, -1, &g); /* no pre: llama.cpp's "default" */
    CHECK(t && !strcmp(rq_tokenizer_pre(t), "default"));
    rq_tokenizer_free(t);
    free(g.b);

    CHECK(synth_tok("llama", "gpt-2", -1, &g) == NULL);
    CHECKF(strstr(rq_error(), "tokenizer model 'llama' not supported"), "%s", rq_error());
    free(g.b);
    CHECK(synth_tok("gpt2", "klingon", -1, &g) == NULL);
    CHECKF(strstr(rq_error(), "tokenizer pre-split 'klingon' not supported (supported: "), "%s", rq_error());
    free(g.b);
}

/* ---- with the packaged models ---------------------------------------------------- */

static void test_basics(void) {
    rq_tokenizer *t = model_tok(0);
    if (!t) SKIP("smollm2-135m.gguf not in the model cache");
    CHECK(rq_tokenizer_n_vocab(t) == 49152);
    CHECK(!rq_tokenizer_adds_bos(t));
    CHECK(rq_tokenizer_bos(t) == 1);
    CHECK(!strcmp(rq_tokenizer_pre(t), "smollm"));

    int32_t *ids;
    size_t n;
    REQUIRE(rq_tokenize(t, "", 0, true, &ids, &n) == 0);
    CHECK(n == 0);
    free(ids);

    /* digits one by one, each its own token */
    REQUIRE(rq_tokenize(t, "12345", 5, true, &ids, &n) == 0);
    CHECK(n == 5);
    for (size_t i = 0; i < n && i < 5; i++) {
        char b[8];
        CHECK(rq_token_to_bytes(t, ids[i], b, sizeof b) == 1 && b[0] == (char)('1' + i));
    }
    free(ids);

    const char bad[] = "caf\xc3\xa9 ok \xff\xfe";
    CHECK(rq_tokenize(t, bad, sizeof bad - 1, true, &ids, &n) == -1);
    CHECK(strstr(rq_error(), "invalid UTF-8") && strstr(rq_error(), "offset 9"));

    char b[4];
    CHECK(rq_token_to_bytes(t, -1, b, sizeof b) == -1);
    CHECK(rq_token_to_bytes(t, 49152, b, sizeof b) == -1);
}

/* Join the bytes of ids; returns a malloc'd buffer. */
static char *detokenize(const rq_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, at = 0;
    char *s = rq_malloc(cap);
    for (size_t i = 0; i < n; i++) {
        int k = rq_token_to_bytes(t, ids[i], s + at, cap - at);
        if (k < 0) break;
        if ((size_t)k > cap - at) {
            while ((size_t)k > cap - at) cap *= 2;
            s = rq_realloc(s, cap);
            rq_token_to_bytes(t, ids[i], s + at, cap - at);
        }
        at += (size_t)k;
    }
    *len = at;
    return s;
}

static void test_roundtrip(void) {
    const char text[] =
        " = Valkyria Chronicles III = \n\n Senj\xc5\x8d no Valkyria 3 : Unrecorded Chronicles ( Japanese : "
        "\xe6\x88\xa6\xe5\xa0\xb4\xe3\x81\xae\xe3\x83\xb4\xe3\x82\xa1\xe3\x83\xab\xe3\x82\xad\xe3\x83\xa5"
        "\xe3\x83\xaa\xe3\x82\xa2 3 , lit . Valkyria of the Battlefield 3 ) , commonly referred to as "
        "Valkyria Chronicles III outside Japan , is a tactical role @-@ playing video game developed by "
        "Sega and Media.Vision for the PlayStation Portable . It's   \t spaced\r\n; caf\xc3\xa9 na\xc3\xafve "
        "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd <tool_call>{}</tool_call> <|im_end|> 1 @,@ 000 \n";
    int any = 0;
    for (size_t m = 0; m < N_MODELS; m++) {
        rq_tokenizer *t = model_tok(m);
        if (!t) continue;
        any = 1;
        int32_t *ids;
        size_t n, len;
        REQUIRE(rq_tokenize(t, text, sizeof text - 1, false, &ids, &n) == 0);
        char *back = detokenize(t, ids, n, &len);
        CHECKF(len == sizeof text - 1 && !memcmp(back, text, len), "%s: round trip differs (%zu bytes back)",
               MODELS[m], len);
        free(back);
        free(ids);
    }
    if (!any) SKIP("no packaged model in the model cache");
}

/* cases-<model>.txt: one text and llama.cpp's ids per case (see make_cases.py). */
static size_t unescape(const char *s, char *out) {
    size_t n = 0;
    while (*s) {
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        char c = s[1];
        if (c == 'x') {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 4;
            continue;
        }
        out[n++] = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
        s += 2;
    }
    return n;
}

static void test_hand_cases(void) {
    int any = 0;
    for (size_t m = 0; m < N_MODELS; m++) {
        rq_tokenizer *t = model_tok(m);
        if (!t) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/cases-%s.txt", RQ_SOURCE_DIR, MODELS[m]);
        char *data;
        size_t len;
        REQUIRE(rq_read_file(path, &data, &len) == 0);
        CHECK(!strncmp(data, "RQTOKCASES 1\n", 13));
        char *text = rq_malloc(len + 1);
        size_t text_len = 0;
        int cases = 0;
        for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
            if (!strncmp(line, "text", 4)) {
                text_len = unescape(line[4] ? line + 5 : "", text);
                continue;
            }
            if (strncmp(line, "ids", 3)) continue;
            int32_t want[1024], *got;
            size_t nw = 0, ng;
            for (char *p = line + 3, *e; nw < 1024; p = e) {
                long v = strtol(p, &e, 10);
                if (e == p) break;
                want[nw++] = (int32_t)v;
            }
            cases++;
            if (rq_tokenize(t, text, text_len, true, &got, &ng)) {
                CHECKF(0, "%s: case %d: %s", MODELS[m], cases, rq_error());
                continue;
            }
            size_t k = 0;
            while (k < ng && k < nw && got[k] == want[k]) k++;
            CHECKF(k == ng && k == nw, "%s: case %d '%.*s': %zu ids, llama.cpp %zu, first difference at %zu",
                   MODELS[m], cases, (int)(text_len < 40 ? text_len : 40), text, ng, nw, k);
            free(got);
        }
        CHECKF(cases >= 20, "%s: only %d cases in %s", MODELS[m], cases, path);
        any = 1;
        free(text);
        free(data);
    }
    if (!any) SKIP("no packaged model in the model cache");
}

/* ---- golden ids from llama.cpp (scripts/make_golden.sh) -------------------------- */

static uint64_t fnv1a_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++) h = (h ^ ((v >> (8 * b)) & 0xff)) * 0x100000001b3ull;
    }
    return h;
}

typedef struct {
    long long n_tokens, block_size, n_blocks, n_first;
    int32_t first[4096];
    uint64_t *hash;
    char llama[160];
} golden;

/* Reads tokens-MODEL-TEXT.txt; see scripts/make_golden.sh for the layout. */
static int read_golden(const char *path, golden *gd) {
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    char line[4096];
    int ok = fgets(line, sizeof line, f) && !strcmp(line, "RQTOKGOLD 1\n");
    memset(gd, 0, sizeof *gd);
    gd->n_tokens = gd->n_first = gd->n_blocks = -1;
    bool ended = false;
    while (ok && !ended && fgets(line, sizeof line, f)) {
        long long v;
        if (!strncmp(line, "provenance.llama_cpp ", 21)) {
            snprintf(gd->llama, sizeof gd->llama, "%.50s", line + 21); /* "llama.cpp <commit>" */
            gd->llama[strcspn(gd->llama, "\n")] = 0;
        } else if (!strncmp(line, "provenance.", 11)) {
            continue;
        } else if (sscanf(line, "n_tokens %lld", &v) == 1) {
            gd->n_tokens = v;
        } else if (sscanf(line, "first_ids %lld", &v) == 1) {
            ok = v >= 0 && v <= 4096;
            for (long long i = 0; ok && i < v; i++) ok = fscanf(f, "%d", &gd->first[i]) == 1;
            gd->n_first = v;
            ok = ok && fgets(line, sizeof line, f); /* rest of the last id line */
        } else if (sscanf(line, "block_size %lld", &v) == 1) {
            gd->block_size = v;
        } else if (sscanf(line, "blocks %lld", &v) == 1) {
            ok = v >= 0 && v < (1 << 24);
            gd->hash = rq_calloc((size_t)(v > 0 ? v : 1), sizeof *gd->hash);
            for (long long i = 0; ok && i < v; i++) {
                long long idx;
                unsigned long long h;
                ok = fscanf(f, "%lld %16llx", &idx, &h) == 2 && idx == i;
                gd->hash[i] = h;
            }
            gd->n_blocks = v;
            ok = ok && fgets(line, sizeof line, f);
        } else if (!strcmp(line, "end\n")) {
            ended = true;
        } else {
            ok = 0;
        }
    }
    fclose(f);
    ok = ok && ended && gd->n_tokens >= 0 && gd->n_first >= 0 && gd->block_size > 0 && gd->n_blocks >= 0 &&
         gd->n_blocks == (gd->n_tokens + gd->block_size - 1) / gd->block_size;
    return ok ? 0 : -1;
}

static void golden_case(size_t m, const char *text_name) {
    const char *dir = rq_test_data_dir();
    if (!dir) SKIP("REPLIQ_DATA not set (the folder with %s.raw)", text_name);
    rq_tokenizer *t = model_tok(m);
    if (!t) SKIP("%s.gguf not in the model cache", MODELS[m]);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/golden/tokens-%s-%s.txt", RQ_SOURCE_DIR, MODELS[m],
             text_name);
    golden gd;
    int rc = read_golden(path, &gd);
    if (rc > 0)
        SKIP("tokens-%s-%s.txt missing; scripts/make_golden.sh %s writes it", MODELS[m], text_name,
             MODELS[m]);
    CHECKF(rc == 0, "%s is not a well-formed RQTOKGOLD 1 file", path);
    if (rc) {
        free(gd.hash);
        return;
    }

    snprintf(path, sizeof path, "%s/%s.raw", dir, text_name);
    char *text;
    size_t len;
    if (rq_read_file(path, &text, &len)) {
        free(gd.hash);
        CHECKF(0, "%s", rq_error());
        return;
    }
    /* llama-perplexity reads -f files dropping one trailing newline; the golden ids do too */
    if (len && text[len - 1] == '\n') len--;
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = rq_time();
    rc = rq_tokenize(t, text, len, true, &ids, &n);
    double dt = rq_time() - t0;
    CHECKF(rc == 0, "%s", rc ? rq_error() : "");
    if (rc == 0) {
        printf("  %s %s: %zu tokens (llama.cpp %lld) in %.2f s, %.1f MB/s\n", MODELS[m], text_name, n,
               gd.n_tokens, dt, (double)len / 1e6 / dt);
        long long k = 0, lim = gd.n_first < (long long)n ? gd.n_first : (long long)n;
        while (k < lim && ids[k] == gd.first[k]) k++;
        CHECKF(k == lim, "first ids differ at position %lld: got %d, llama.cpp %d", k, k < lim ? ids[k] : -1,
               k < lim ? gd.first[k] : -1);
        CHECKF((long long)n == gd.n_tokens, "%zu tokens, llama.cpp %lld", n, gd.n_tokens);
        size_t bs = (size_t)gd.block_size;
        for (long long b = 0; b < gd.n_blocks; b++) {
            size_t lo = (size_t)b * bs, hi = lo + bs < n ? lo + bs : n;
            uint64_t h = lo < n ? fnv1a_ids(ids + lo, hi - lo) : 0;
            if (h != gd.hash[b]) {
                CHECKF(0, "block %lld (ids %zu..%zu) is the first that differs from llama.cpp (%s)", b, lo,
                       lo + bs - 1, gd.llama);
                break;
            }
        }
    }
    free(ids);
    free(text);
    free(gd.hash);
}

static void test_golden_smollm_test(void) { golden_case(0, "wiki.test"); }
static void test_golden_smollm_valid(void) { golden_case(0, "wiki.valid"); }
static void test_golden_qwen_test(void) { golden_case(1, "wiki.test"); }
static void test_golden_qwen_valid(void) { golden_case(1, "wiki.valid"); }

int main(void) {
    RUN(test_pretok_splits);
    RUN(test_utf8_check);
    RUN(test_synthetic_vocab);
    RUN(test_basics);
    RUN(test_roundtrip);
    RUN(test_hand_cases);
    RUN(test_golden_smollm_test);
    RUN(test_golden_smollm_valid);
    RUN(test_golden_qwen_test);
    RUN(test_golden_qwen_valid);
    for (size_t m = 0; m < N_MODELS; m++) rq_tokenizer_free(g_tok[m]);
    TEST_EXIT();
}
