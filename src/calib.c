/* calib.c - calibration windows from a JSON-lines file (plain or xz): documents
 * shuffled with a seed, joined, tokenized only as far as needed, cut into windows. */
#include "calib.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <lzma.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "grid.h"
#include "tokenizer.h"
#include "util.h"

/* Tokens tokenized past the last window before the prefix is trusted: only the
 * words at the prefix's end can split differently from the whole text, because
 * the pre-tokenizer looks at most one character ahead. */
#define CALIB_MARGIN 64

typedef struct {
    char **text;
    size_t *len;
    int n;
} doc_set;

static void docs_free(doc_set *d) {
    for (int i = 0; i < d->n; i++)
        free(d->text[i]);
    free(d->text);
    free(d->len);
    memset(d, 0, sizeof *d);
}

static void hex(const unsigned char *md, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int sha256_bytes(const void *p, size_t n, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(p ? p : "", n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return rq_fail("sha256 failed (OpenSSL EVP_Digest)");
    hex(md, mdlen, out);
    out[64] = 0;
    return 0;
}

int rq_sha256_file(const char *path, char out[65]) {
    const void *base;
    size_t size;
    if (rq_map_file(path, &base, &size)) return -1;
    int rc = sha256_bytes(base, size, out);
    rq_unmap_file(base, size);
    return rc;
}

/* Decompress a whole .xz stream (or several concatenated) into a NUL-terminated buffer. */
static int xz_decode(const char *path, const uint8_t *in, size_t n, char **out, size_t *out_len) {
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_ret r = lzma_stream_decoder(&s, UINT64_MAX, LZMA_CONCATENATED);
    if (r != LZMA_OK) return rq_fail("%s: cannot start the xz decoder (liblzma error %d)", path, (int)r);
    size_t cap = n * 4 + 4096, len = 0;
    char *buf = rq_malloc(cap);
    s.next_in = in;
    s.avail_in = n;
    for (;;) {
        if (len + 1 >= cap) buf = rq_realloc(buf, cap *= 2);
        s.next_out = (uint8_t *)buf + len;
        s.avail_out = cap - len - 1;
        r = lzma_code(&s, LZMA_FINISH);
        len = cap - 1 - s.avail_out;
        if (r == LZMA_STREAM_END) break;
        if (r == LZMA_OK) continue;
        lzma_end(&s);
        free(buf);
        const char *why = r == LZMA_DATA_ERROR     ? "is corrupt"
                          : r == LZMA_BUF_ERROR    ? "is truncated"
                          : r == LZMA_FORMAT_ERROR ? "is not in the xz format"
                          : r == LZMA_MEM_ERROR    ? "needs more memory than is available"
                                                   : "cannot be decoded";
        return rq_fail("%s: the xz data %s (liblzma error %d)", path, why, (int)r);
    }
    lzma_end(&s);
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
}

/* One document per non-empty line: a JSON object with a string "text". */
static int parse_lines(const char *path, const char *p, size_t n, doc_set *d) {
    int cap = 0;
    memset(d, 0, sizeof *d);
    int line = 0;
    for (size_t at = 0; at < n;) {
        const char *nl = memchr(p + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - p) : n, ll = end - at;
        const char *s = p + at;
        at = end + 1;
        line++;
        if (ll && s[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        const char *stop = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(s, ll, &stop, 0);
        while (o && stop < s + ll && (*stop == ' ' || *stop == '\t'))
            stop++;
        if (!o || stop != s + ll) {
            cJSON_Delete(o);
            return rq_fail("%s: line %d is not one JSON object (error at column %d)", path, line,
                           stop ? (int)(stop - s) + 1 : 1);
        }
        const cJSON *t = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        if (!cJSON_IsString(t)) {
            cJSON_Delete(o);
            return rq_fail("%s: line %d has no string \"text\" (each line must be {\"text\": \"...\", ...})", path,
                           line);
        }
        size_t tl = strlen(t->valuestring), bad = rq_utf8_check(t->valuestring, tl);
        if (bad != tl) {
            cJSON_Delete(o);
            return rq_fail("%s: line %d: \"text\" is not valid UTF-8 (byte %zu)", path, line, bad);
        }
        if (d->n == cap) {
            cap = cap ? cap * 2 : 256;
            d->text = rq_realloc(d->text, (size_t)cap * sizeof *d->text);
            d->len = rq_realloc(d->len, (size_t)cap * sizeof *d->len);
        }
        d->text[d->n] = rq_strndup(t->valuestring, tl);
        d->len[d->n++] = tl;
        cJSON_Delete(o);
    }
    if (d->n == 0) return rq_fail("%s: holds no documents (expected one {\"text\": ...} per line)", path);
    return 0;
}

/* Read every document of the file; sha (may be NULL) gets the stored bytes' hash. */
static int read_docs(const char *path, doc_set *d, char sha[65]) {
    struct stat st;
    memset(d, 0, sizeof *d);
    if (stat(path, &st) != 0)
        return rq_fail("calibration file '%s' not found (%s): give its path with -f, or set REPLIQ_DATA to the folder "
                       "that holds it",
                       path, strerror(errno));
    const void *base;
    size_t size;
    if (rq_map_file(path, &base, &size)) return -1;
    int rc = sha ? sha256_bytes(base, size, sha) : 0;
    static const uint8_t XZ_MAGIC[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
    if (!rc && size >= 6 && !memcmp(base, XZ_MAGIC, 6)) {
        char *text = NULL;
        size_t len = 0;
        rc = xz_decode(path, base, size, &text, &len);
        if (!rc) {
            rc = parse_lines(path, text, len, d);
            free(text);
        }
    } else if (!rc) {
        rc = parse_lines(path, base ? base : "", size, d);
    }
    rq_unmap_file(base, size);
    if (rc) docs_free(d);
    return rc;
}

/* Fisher-Yates with rq_rng stream 0 (the modulo's bias is below 2^-32 for any
 * document count that fits in memory). */
static int *shuffled(int n, uint64_t seed) {
    int *order = rq_malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    rq_rng r;
    rq_rng_seed(&r, seed, 0);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rq_rng_next(&r) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

/* The first k documents in order joined with "\n\n"; starts[i] (if given) is where
 * document i begins. */
static char *join(const doc_set *d, const int *order, int k, size_t *len, size_t *starts) {
    size_t total = k ? 2 * (size_t)(k - 1) : 0;
    for (int i = 0; i < k; i++)
        total += d->len[order[i]];
    char *t = rq_malloc(total + 1), *w = t;
    for (int i = 0; i < k; i++) {
        if (i) {
            memcpy(w, "\n\n", 2);
            w += 2;
        }
        if (starts) starts[i] = (size_t)(w - t);
        memcpy(w, d->text[order[i]], d->len[order[i]]);
        w += d->len[order[i]];
    }
    *w = 0;
    *len = total;
    return t;
}

int rq_calib_text(const char *path, uint64_t seed, char **text, size_t *len) {
    doc_set d;
    if (read_docs(path, &d, NULL)) return -1;
    int *order = shuffled(d.n, seed);
    *text = join(&d, order, d.n, len, NULL);
    free(order);
    docs_free(&d);
    return 0;
}

int rq_calib_load(const char *path, const rq_tokenizer *tok, int n, int len, uint64_t seed, rq_calib *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || len < 1) return rq_fail("calibration needs n >= 1 windows of len >= 1 tokens (got %d x %d)", n, len);
    doc_set d;
    char sha[65];
    if (read_docs(path, &d, sha)) return -1;
    int *order = shuffled(d.n, seed);
    size_t need = (size_t)n * (size_t)len, *starts = rq_malloc((size_t)d.n * sizeof *starts);
    /* Tokenize a growing prefix of documents until it gives the windows plus a
     * margin; the first need tokens then equal those of the whole joined text. */
    double chars_per_token = 4.0, want = (double)(need + CALIB_MARGIN) * chars_per_token;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int k = 0, rc = 0;
    for (;;) {
        size_t chars = 0;
        k = 0;
        while (k < d.n && (double)chars < want)
            chars += d.len[order[k++]] + 2;
        size_t tlen;
        char *text = join(&d, order, k, &tlen, starts);
        rc = rq_tokenize(tok, text, tlen, false, &ids, &n_ids);
        free(text);
        if (rc) {
            rq_fail_ctx("%s: tokenizing the calibration text", path);
            break;
        }
        if (k == d.n && n_ids < need) {
            rc = rq_fail("%s: calibration needs %zu tokens (%d windows of %d), the file has %zu; use fewer or shorter "
                         "windows",
                         path, need, n, len, n_ids);
            break;
        }
        if (k == d.n || n_ids >= need + CALIB_MARGIN) break;
        /* too short: re-estimate from what this prefix gave, with 10% to spare */
        if (n_ids) chars_per_token = (double)tlen / (double)n_ids;
        double next = (double)(need + CALIB_MARGIN) * chars_per_token * 1.1;
        want = next > (double)tlen + 1 ? next : (double)tlen + 1;
        free(ids);
        ids = NULL;
    }
    if (!rc) {
        /* the byte offset where the last window ends tells how many documents it reaches */
        size_t end = 0;
        char tmp[256];
        for (size_t i = 0; i < need; i++) {
            int b = rq_token_to_bytes(tok, ids[i], tmp, sizeof tmp);
            if (b > 0) end += (size_t)b;
        }
        int used = 0;
        while (used < k && starts[used] < end)
            used++;
        out->tokens = rq_malloc(need * sizeof *out->tokens);
        memcpy(out->tokens, ids, need * sizeof *out->tokens);
        out->n = n;
        out->len = len;
        out->seed = seed;
        out->n_docs = d.n;
        out->docs_used = used;
        memcpy(out->sha256, sha, sizeof out->sha256);
        out->path = rq_strdup(path);
    }
    free(ids);
    free(starts);
    free(order);
    docs_free(&d);
    return rc;
}

void rq_calib_free(rq_calib *c) {
    free(c->tokens);
    free(c->path);
    memset(c, 0, sizeof *c);
}
