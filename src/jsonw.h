/* jsonw.h - small pieces of JSON writing shared by the tools that write JSON by hand. */
#ifndef RQ_JSONW_H
#define RQ_JSONW_H

#include <stddef.h>
#include <stdio.h>

/* s[0..n) as a JSON string literal, quotes included; control bytes escaped; when
 * s is not valid UTF-8, each byte >= 0x80 as the text \\xHH. */
void rq_json_str(FILE *f, const char *s, size_t n);

#endif
