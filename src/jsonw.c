/* jsonw.c - JSON writing helpers (jsonw.h). */
#include "jsonw.h"

#include <stdbool.h>

#include "tokenizer.h"

void rq_json_str(FILE *f, const char *s, size_t n) {
    bool utf8 = rq_utf8_check(s, n) == n;
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else if (c >= 0x80 && !utf8)
            fprintf(f, "\\\\x%02X", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
