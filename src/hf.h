/* hf.h - a Hugging Face checkpoint folder (config.json + *.safetensors, Llama or
 * Qwen2, F32/F16/BF16) seen as an rq_gguf with llama.cpp's keys and tensor names. */
#ifndef RQ_HF_H
#define RQ_HF_H

#include "gguf.h"

/* Open the checkpoint in dir: config.json, then model.safetensors.index.json
 * (sharded) or model.safetensors. The view holds the metadata keys llama.cpp's
 * convert_hf_to_gguf.py would write for the model (general.architecture,
 * <arch>.block_count, .embedding_length, ...), and the tensors under GGUF names
 * with GGUF shapes (ne[0] the contiguous row length) and types F32/F16/BF16,
 * mapped from the files; Llama's attn_q/attn_k rows are permuted as the converter
 * does, so the view matches a GGUF of the same model. The tokenizer is not read:
 * tokenizer.ggml.* keys are absent. Malformed input (config keys, shapes, dtypes,
 * extents) fails with a message naming the file and the key or tensor.
 * rq_gguf_close frees everything. */
int rq_hf_open(const char *dir, rq_gguf **out);

#endif
