/* fuzz_gguf.c - libFuzzer target for the GGUF reader: any byte string must be
 * either parsed or refused with a message, never crash or read out of bounds.
 * Parsed files are also walked: every getter, and dequantization of every tensor
 * whose type repliq can dequantize. Build and run: scripts/fuzz.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size heap copy so that ASan sees any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    rq_gguf *g;
    if (rq_gguf_open_mem(buf, size, "fuzz", &g) == 0) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            int64_t iv;
            double fv;
            bool bv;
            rq_str sv;
            uint64_t n;
            const rq_str *strs;
            rq_gguf_get_int(g, g->kv[i].key, &iv);
            rq_gguf_get_float(g, g->kv[i].key, &fv);
            rq_gguf_get_bool(g, g->kv[i].key, &bv);
            if (rq_gguf_get_str(g, g->kv[i].key, &sv) == 0 && sv.len) (void)(volatile char)sv.ptr[sv.len - 1];
            if (rq_gguf_get_strs(g, g->kv[i].key, &n, &strs) == 0)
                for (uint64_t k = 0; k < n; k++)
                    if (strs[k].len) (void)(volatile char)strs[k].ptr[strs[k].len - 1];
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const rq_gguf_tensor *t = &g->tensors[i];
            int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
            if (nel > 0 && nel <= (1 << 16)) {
                float *out = malloc((size_t)nel * sizeof(float));
                rq_ggml_to_float(t->type, t->data, out, nel);
                free(out);
            }
        }
        rq_gguf_close(g);
    }
    free(buf);
    return 0;
}
