/* valid_utf8.h — a UTF-8 validator for the tokenizer's tests, written apart from
 * tokenizer.c's decoder so that each checks the other: decode each sequence by its lead
 * byte's bit pattern, then reject overlong forms, surrogates and values past U+10FFFF. */
#ifndef VALID_UTF8_H
#define VALID_UTF8_H

#include <stddef.h>
#include <stdint.h>

static int valid_utf8(const char *buf, size_t n) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};  /* by length: shorter is overlong */
    const unsigned char *s = (const unsigned char *)buf;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], len = c < 0x80 ? 1 : c >> 5 == 6 ? 2 : c >> 4 == 14 ? 3 : c >> 3 == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
        for (unsigned k = 1; k < len; k++) {
            if (s[i + k] >> 6 != 2) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

#endif
