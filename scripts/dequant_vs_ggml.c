/* dequant_vs_ggml.c - compares repliq's dequantizers bit for bit with ggml's C
 * reference (its type_traits to_float) on every tensor of the GGUF files given and
 * on random blocks. Built and run by scripts/check_dequant_vs_ggml.sh, not by CI. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml.h"
#include "gguf.h"

#include "ggml_types.h"
#include "util.h"

#define CHUNK_BLOCKS 8192 /* blocks dequantized per call: bounds memory on large tensors */
#define RANDOM_ROUNDS 16   /* of CHUNK_BLOCKS random blocks per type */

typedef struct {
    int64_t tensors, values, mismatches, nan_only; /* nan_only: both NaN, payloads differ */
} tally;

static tally real[RQ_GGML_TYPE_LIMIT], random_[RQ_GGML_TYPE_LIMIT];
static int failures;

/* The traits of both sides must agree for every id either side knows. */
static void check_traits(void) {
    int checked = 0;
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *ours = rq_ggml_traits_of(t);
        const struct ggml_type_traits *theirs =
            t < GGML_TYPE_COUNT ? ggml_get_type_traits((enum ggml_type)t) : NULL;
        int they_know = theirs && theirs->blck_size > 0;
        if (!ours != !they_know) {
            printf("traits: id %d: repliq %s it, ggml %s it\n", t, ours ? "knows" : "does not know",
                   they_know ? "knows" : "does not know");
            failures++;
            continue;
        }
        if (!ours) continue;
        checked++;
        if (strcmp(ours->name, theirs->type_name) != 0 || ours->block_size != theirs->blck_size ||
            ours->type_size != theirs->type_size) {
            printf("traits: id %d: repliq %s %lld/%zu, ggml %s %lld/%zu\n", t, ours->name,
                   (long long)ours->block_size, ours->type_size, theirs->type_name,
                   (long long)theirs->blck_size, theirs->type_size);
            failures++;
        }
    }
    printf("traits: %d type ids compared with ggml's type_traits (name, block size, type size)\n",
           checked);
}

/* Dequantize nblocks blocks both ways and count differing values. */
static void compare_blocks(int type, const void *src, int64_t nblocks, float *a, float *b, tally *tl) {
    const rq_ggml_traits *tr = rq_ggml_traits_of(type);
    const struct ggml_type_traits *gt = ggml_get_type_traits((enum ggml_type)type);
    int64_t n = nblocks * tr->block_size;
    if (rq_ggml_to_float(type, src, a, n)) {
        printf("%s: %s\n", tr->name, rq_error());
        failures++;
        return;
    }
    if (gt->to_float)
        gt->to_float(src, b, n);
    else /* ggml has no to_float for f32: its data is the value */
        memcpy(b, src, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) == 0) continue;
        if (isnan(a[i]) && isnan(b[i]))
            tl->nan_only++;
        else
            tl->mismatches++;
    }
    tl->values += n;
}

static int compare_file(const char *path, float *a, float *b) {
    struct gguf_init_params params = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, params);
    if (!g) {
        printf("%s: ggml cannot read it as GGUF\n", path);
        return -1;
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        printf("%s: cannot open\n", path);
        gguf_free(g);
        return -1;
    }
    const uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        printf("%s: cannot map\n", path);
        gguf_free(g);
        return -1;
    }
    const uint8_t *data = map + gguf_get_data_offset(g);
    int64_t nt = gguf_get_n_tensors(g), skipped = 0;
    for (int64_t i = 0; i < nt; i++) {
        int type = (int)gguf_get_tensor_type(g, i);
        const rq_ggml_traits *tr = rq_ggml_traits_of(type);
        if (!tr || !tr->to_float) {
            skipped++;
            continue;
        }
        const uint8_t *src = data + gguf_get_tensor_offset(g, i);
        int64_t nblocks = (int64_t)(gguf_get_tensor_size(g, i) / tr->type_size);
        for (int64_t done = 0; done < nblocks; done += CHUNK_BLOCKS) {
            int64_t k = nblocks - done < CHUNK_BLOCKS ? nblocks - done : CHUNK_BLOCKS;
            compare_blocks(type, src + (size_t)done * tr->type_size, k, a, b, &real[type]);
        }
        real[type].tensors++;
    }
    printf("%s: %lld tensors", path, (long long)nt);
    if (skipped) printf(", %lld of types repliq cannot dequantize skipped", (long long)skipped);
    printf("\n");
    munmap((void *)map, (size_t)st.st_size);
    gguf_free(g);
    return 0;
}

/* xorshift64*: reproducible random bytes without libc's rand */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Entirely random blocks, scales included: they reach f16 subnormals, inf and
 * NaN scales, and every bit pattern of the packed values. */
static void compare_random(float *a, float *b) {
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        const rq_ggml_traits *tr = rq_ggml_traits_of(t);
        if (!tr || !tr->to_float) continue;
        const int64_t nblocks = CHUNK_BLOCKS;
        size_t bytes = (size_t)nblocks * tr->type_size;
        uint8_t *src = rq_malloc(bytes + 8);
        for (int round = 0; round < RANDOM_ROUNDS; round++) {
            for (size_t i = 0; i < bytes; i += 8) {
                uint64_t r = rng_next();
                memcpy(src + i, &r, 8);
            }
            compare_blocks(t, src, nblocks, a, b, &random_[t]);
        }
        free(src);
    }
}

static void print_tally(const char *what, const tally *tl) {
    printf("%s:\n  %-6s %8s %14s %11s %10s\n", what, "type", "tensors", "values", "mismatches",
           "nan-only");
    for (int t = 0; t < RQ_GGML_TYPE_LIMIT; t++) {
        if (!tl[t].values) continue;
        printf("  %-6s %8lld %14lld %11lld %10lld\n", rq_ggml_traits_of(t)->name,
               (long long)tl[t].tensors, (long long)tl[t].values, (long long)tl[t].mismatches,
               (long long)tl[t].nan_only);
        if (tl[t].mismatches || tl[t].nan_only) failures++;
    }
}

int main(int argc, char **argv) {
    check_traits();
    /* the largest chunk: q*_K blocks hold 256 values */
    float *a = rq_malloc((size_t)CHUNK_BLOCKS * 256 * sizeof(float));
    float *b = rq_malloc((size_t)CHUNK_BLOCKS * 256 * sizeof(float));
    for (int i = 1; i < argc; i++)
        if (compare_file(argv[i], a, b)) failures++;
    compare_random(a, b);
    print_tally("real tensors, repliq vs ggml reference", real);
    print_tally("random blocks (any scale bits), repliq vs ggml reference", random_);
    free(a);
    free(b);
    printf("%s\n", failures ? "FAILED: see the lines above" : "OK: bit-exact with ggml on every value");
    return failures ? 1 : 0;
}
