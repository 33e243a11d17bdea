/* test_calib.c - calibration windows: plain and xz files give the same windows, the
 * seed decides the order, errors name the line or the shortfall, and the C4 sample loads. */
#include <lzma.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "gguf.h"
#include "rq_test.h"
#include "tokenizer.h"
#include "util.h"

#define C4_FILE "c4-en-validation-sample-2000.jsonl.xz"
#define C4_SHA256 "f8af3ad2387a2f67a1dac73a865f14417d8699ef17b8a703955b7dc497cef1d8"
enum { N_DOCS = 30 };

static rq_tokenizer *g_tok;
static char g_plain[128], g_xz[128];

/* The smollm2 tokenizer from the model cache, loaded once; NULL when not cached. */
static rq_tokenizer *tokenizer(void) {
    static bool tried;
    if (tried) return g_tok;
    tried = true;
    char buf[1024];
    const char *path = rq_test_model("smollm2-135m.gguf", buf, sizeof buf);
    rq_gguf *g;
    if (!path || rq_gguf_open(path, &g)) return NULL;
    if (rq_tokenizer_from_gguf(g, &g_tok)) printf("  %s\n", rq_error());
    rq_gguf_close(g);
    return g_tok;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* N_DOCS documents of varied words (some non-ASCII, some escaped) and lengths. */
static char *make_jsonl(size_t *len) {
    static const char *const W[] = {"the",    "quantized", "model",   "keeps", "its",       "weights", "in",
                                    "groups", "of",        "128",     "café",  "naïve",     "日本語",  "and",
                                    "rounds", "to",        "nearest", "3.14",  "\\\"q\\\"", "\\n"};
    size_t cap = 1 << 16, at = 0;
    char *s = rq_malloc(cap);
    uint32_t x = 12345;
    for (int d = 0; d < N_DOCS; d++) {
        at += (size_t)snprintf(s + at, cap - at, "{\"url\": \"u%d\", \"text\": \"Document %d:", d, d);
        int words = 20 + d * 7 % 60;
        for (int i = 0; i < words; i++) {
            x = x * 1103515245u + 12345u;
            at += (size_t)snprintf(s + at, cap - at, " %s", W[(x >> 16) % (sizeof W / sizeof W[0])]);
        }
        at += (size_t)snprintf(s + at, cap - at, ".\", \"timestamp\": \"2019-04-20\"}\n");
    }
    *len = at;
    return s;
}

/* Write the test file plainly and xz-compressed (under a name without .xz: the
 * format is found from the magic bytes). */
static int make_files(void) {
    if (g_plain[0]) return 0;
    snprintf(g_plain, sizeof g_plain, "/tmp/rq_calib_%d.jsonl", (int)getpid());
    snprintf(g_xz, sizeof g_xz, "/tmp/rq_calib_%d.data", (int)getpid());
    size_t n;
    char *s = make_jsonl(&n);
    size_t cap = lzma_stream_buffer_bound(n), pos = 0;
    uint8_t *z = rq_malloc(cap);
    int rc = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, (const uint8_t *)s, n, z, &pos, cap) != LZMA_OK;
    rc = rc || write_bytes(g_plain, s, n) || write_bytes(g_xz, z, pos);
    free(s);
    free(z);
    return rc ? -1 : 0;
}

static void test_plain_and_xz(void) {
    rq_tokenizer *tok = tokenizer();
    if (!tok) SKIP("smollm2-135m.gguf is not in the model cache (repliq pull smollm2-135m)");
    REQUIRE(make_files() == 0);
    rq_calib a, b;
    REQUIRE(rq_calib_load(g_plain, tok, 3, 32, 7, &a) == 0);
    REQUIRE(rq_calib_load(g_xz, tok, 3, 32, 7, &b) == 0);
    CHECK(a.n == 3 && a.len == 32 && a.seed == 7 && a.n_docs == N_DOCS && b.n_docs == N_DOCS);
    CHECK(!memcmp(a.tokens, b.tokens, 3 * 32 * sizeof(int32_t)));
    CHECK(a.docs_used == b.docs_used && a.docs_used >= 1 && a.docs_used < N_DOCS);
    /* the hash is of the bytes as stored */
    char h[65];
    REQUIRE(rq_sha256_file(g_xz, h) == 0);
    CHECK(!strcmp(h, b.sha256) && strcmp(a.sha256, b.sha256) && strlen(a.sha256) == 64);
    CHECK(!strcmp(a.path, g_plain));
    /* the text of both is the same */
    char *ta, *tb;
    size_t la, lb;
    REQUIRE(rq_calib_text(g_plain, 7, &ta, &lb) == 0);
    REQUIRE(rq_calib_text(g_xz, 7, &tb, &la) == 0);
    CHECK(la == lb && !memcmp(ta, tb, la) && !strncmp(ta, "Document ", 9));
    /* the windows are the first tokens of the whole joined text, though only a prefix was tokenized */
    int32_t *ids;
    size_t n_ids;
    REQUIRE(rq_tokenize(tok, ta, la, false, &ids, &n_ids) == 0);
    CHECKF(n_ids > 3 * 32 && !memcmp(ids, a.tokens, 3 * 32 * sizeof(int32_t)), "%zu tokens", n_ids);
    free(ta);
    free(tb);
    /* exactly all the tokens: every document is used; one more is refused */
    rq_calib c;
    REQUIRE(rq_calib_load(g_xz, tok, 1, (int)n_ids, 7, &c) == 0);
    CHECK(c.docs_used == N_DOCS && !memcmp(c.tokens, ids, n_ids * sizeof(int32_t)));
    rq_calib_free(&c);
    char want[128];
    snprintf(want, sizeof want, "needs %zu tokens (1 windows of %zu), the file has %zu", n_ids + 1, n_ids + 1, n_ids);
    CHECKF(rq_calib_load(g_xz, tok, 1, (int)n_ids + 1, 7, &c) != 0 && strstr(rq_error(), want), "%s", rq_error());
    CHECK(rq_calib_load(g_plain, tok, 4, (int)n_ids, 7, &c) != 0 && strstr(rq_error(), "the file has"));
    free(ids);
    rq_calib_free(&a);
    rq_calib_free(&b);
}

static void test_seed(void) {
    rq_tokenizer *tok = tokenizer();
    if (!tok) SKIP("smollm2-135m.gguf is not in the model cache");
    REQUIRE(make_files() == 0);
    rq_calib a, b, c;
    REQUIRE(rq_calib_load(g_plain, tok, 2, 64, 1, &a) == 0);
    REQUIRE(rq_calib_load(g_plain, tok, 2, 64, 1, &b) == 0);
    REQUIRE(rq_calib_load(g_plain, tok, 2, 64, 2, &c) == 0);
    CHECK(!memcmp(a.tokens, b.tokens, 2 * 64 * sizeof(int32_t)));
    CHECK(memcmp(a.tokens, c.tokens, 2 * 64 * sizeof(int32_t)) != 0);
    rq_calib_free(&a);
    rq_calib_free(&b);
    rq_calib_free(&c);
    /* a different seed reorders the same documents */
    char *t1, *t2;
    size_t l1, l2;
    REQUIRE(rq_calib_text(g_plain, 1, &t1, &l1) == 0);
    REQUIRE(rq_calib_text(g_plain, 2, &t2, &l2) == 0);
    CHECK(l1 == l2 && memcmp(t1, t2, l1) != 0);
    free(t1);
    free(t2);
}

static void test_errors(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/rq_calib_bad_%d.jsonl", (int)getpid());
    char *t;
    size_t l;
    static const struct {
        const char *content, *want;
    } CASES[] = {
        {"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"txt\": \"c\"}\n", "line 3 has no string \"text\""},
        {"{\"text\": \"a\"}\n\n{\"text\": 5}\n", "line 3 has no string \"text\""},
        {"{\"text\": \"a\"}\n{not json\n", "line 2 is not one JSON object"},
        {"{\"text\": \"a\"} {\"text\": \"b\"}\n", "line 1 is not one JSON object"},
        {"[\"text\"]\n", "line 1 has no string"},
        {"\n\n", "holds no documents"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        REQUIRE(write_bytes(path, CASES[i].content, strlen(CASES[i].content)) == 0);
        int rc = rq_calib_text(path, 0, &t, &l);
        CHECKF(rc != 0 && strstr(rq_error(), CASES[i].want) && strstr(rq_error(), path), "case %zu: %s", i,
               rc ? rq_error() : "accepted");
        if (!rc) free(t);
    }
    /* a truncated xz stream */
    const char *doc = "{\"text\": \"hello world\"}\n";
    uint8_t z[256];
    size_t pos = 0;
    REQUIRE(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, (const uint8_t *)doc, strlen(doc), z, &pos, sizeof z) ==
            LZMA_OK);
    REQUIRE(write_bytes(path, z, pos - 8) == 0);
    CHECKF(rq_calib_text(path, 0, &t, &l) != 0 && strstr(rq_error(), "xz data"), "%s", rq_error());
    REQUIRE(write_bytes(path, z, pos) == 0);
    REQUIRE(rq_calib_text(path, 0, &t, &l) == 0);
    CHECK(l == 11 && !memcmp(t, "hello world", 11));
    free(t);
    unlink(path);
    /* a missing file says where and how to give it */
    CHECK(rq_calib_text("/nonexistent/c4.jsonl.xz", 0, &t, &l) != 0);
    CHECKF(strstr(rq_error(), "/nonexistent/c4.jsonl.xz") && strstr(rq_error(), "REPLIQ_DATA") &&
               strstr(rq_error(), "-f"),
           "%s", rq_error());
}

static void test_c4(void) {
    const char *dir = rq_test_data_dir();
    if (!dir) SKIP("REPLIQ_DATA is not set");
    rq_tokenizer *tok = tokenizer();
    if (!tok) SKIP("smollm2-135m.gguf is not in the model cache");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, C4_FILE);
    rq_calib a, b;
    double t0 = rq_time();
    REQUIRE(rq_calib_load(path, tok, 2, 2048, 0, &a) == 0);
    double t1 = rq_time();
    REQUIRE(rq_calib_load(path, tok, 2, 2048, 0, &b) == 0);
    printf("  %s: %d documents, %d used for 2 x 2048 tokens, sha256 %s (%.2fs)\n", C4_FILE, a.n_docs, a.docs_used,
           a.sha256, t1 - t0);
    CHECK(a.n_docs == 2000 && a.docs_used >= 1 && a.docs_used < 2000);
    CHECK(!strcmp(a.sha256, b.sha256) && !strcmp(a.sha256, C4_SHA256));
    CHECK(!memcmp(a.tokens, b.tokens, 2 * 2048 * sizeof(int32_t)));
    bool in_vocab = true;
    for (int i = 0; i < 2 * 2048; i++)
        in_vocab &= a.tokens[i] >= 0 && a.tokens[i] < rq_tokenizer_n_vocab(tok);
    CHECK(in_vocab);
    /* the recipes' 12 x 2048 windows are the first tokens of the whole shuffled text
     * (tokenizing all of it takes about a second) */
    rq_calib c;
    REQUIRE(rq_calib_load(path, tok, 12, 2048, 0, &c) == 0);
    char *text;
    size_t len, n_ids;
    int32_t *ids;
    REQUIRE(rq_calib_text(path, 0, &text, &len) == 0);
    REQUIRE(rq_tokenize(tok, text, len, false, &ids, &n_ids) == 0);
    printf("  whole text: %zu bytes, %zu tokens; 12 x 2048 windows use %d documents\n", len, n_ids, c.docs_used);
    CHECK(n_ids > 12 * 2048 && !memcmp(ids, c.tokens, 12 * 2048 * sizeof(int32_t)));
    CHECK(!memcmp(ids, a.tokens, 2 * 2048 * sizeof(int32_t)));
    free(ids);
    free(text);
    rq_calib_free(&c);
    rq_calib_free(&a);
    rq_calib_free(&b);
}

int main(void) {
    RUN(test_plain_and_xz);
    RUN(test_seed);
    RUN(test_errors);
    RUN(test_c4);
    if (g_plain[0]) {
        unlink(g_plain);
        unlink(g_xz);
    }
    rq_tokenizer_free(g_tok);
    TEST_EXIT();
}
