/* seed_gguf.c - writes a few small valid GGUF files (every metadata type, arrays,
 * tensors of several ggml types) as seeds for the fuzzer's corpus. */
#include <stdio.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "util.h"

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    static uint8_t blob[4096];
    for (size_t i = 0; i < sizeof blob; i++) blob[i] = (uint8_t)(i * 37 + 11);
    /* keep fp16 scales finite: byte 1 of each block small */
    const int types[] = {RQ_GGML_F32, RQ_GGML_F16, RQ_GGML_Q4_0, RQ_GGML_Q4_1, RQ_GGML_Q8_0, RQ_GGML_Q4_K, RQ_GGML_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        rq_gguf_writer *w = rq_gguf_writer_new();
        rq_gguf_set_str(w, "general.architecture", "llama");
        rq_gguf_set_u32(w, "llama.block_count", 1);
        rq_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
        rq_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
        rq_gguf_set_u64(w, "x.u64", 7);
        rq_gguf_set_i32(w, "x.i32", -7);
        const rq_ggml_traits *t = rq_ggml_traits_of(types[k]);
        int64_t ne[2] = {t->block_size == 1 ? 8 : t->block_size, 2};
        size_t nb = rq_ggml_row_size(types[k], ne[0]) * 2;
        rq_gguf_add_tensor(w, "t.weight", types[k], 2, ne, blob, nb);
        char path[512];
        snprintf(path, sizeof path, "%s/seed-%s.gguf", argv[1], t->name);
        if (rq_gguf_write(w, path)) fprintf(stderr, "%s\n", rq_error());
        rq_gguf_writer_free(w);
    }
    return 0;
}
