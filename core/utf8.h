/*
 * UTF-8 for what mmt writes for other programs to read (the exports' tag paths, the trace's
 * CSV, the SVG, mmt-run's JSON summary): names come from tags, rule names and command
 * lines, which may hold any bytes. Invalid UTF-8 is found as Unicode recommends and
 * Python's decoder does (each maximal invalid subpart is one replacement character,
 * U+FFFD), and text is cut only at character boundaries. Header-only: the library, the
 * preload library and mmt-run all use it, and it neither allocates nor calls stdio, so a
 * trace row can use it inside an allocation.
 */
#ifndef MMT_CORE_UTF8_H
#define MMT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MMT_UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* The character at s (len >= 1 bytes there): returns its length and sets *cp to its code
 * point; for an invalid sequence, returns the length of its maximal invalid subpart (at
 * least 1) and sets *cp to -1. Overlong forms, surrogates and code points past U+10FFFF
 * are invalid. */
static inline size_t mmt__utf8_next(const unsigned char *s, size_t len, int32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    int32_t v;
    unsigned char lo = 0x80, hi = 0xBF; /* what the second byte may be */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else {
        *cp = -1;
        return 1;
    }
    size_t i = 1;
    for (; i <= need && i < len; i++) {
        if (s[i] < lo || s[i] > hi) break;
        v = (v << 6) | (s[i] & 0x3F);
        lo = 0x80, hi = 0xBF;
    }
    if (i <= need) {
        *cp = -1;
        return i;
    }
    *cp = v;
    return need + 1;
}

enum {
    /* For XML 1.0 character data: the characters it forbids (C0 controls, U+FFFE, U+FFFF)
     * become U+FFFD, and tab, line feed and carriage return a space (one line of text). */
    MMT_UTF8_XML = 1,
};

/* Copies `in` into out (cap + 1 bytes) as valid UTF-8 (with `flags`), and NUL-terminates
 * it; stops before the first character that would take it past `cap` bytes, and then sets
 * *cut. Returns the length written. */
static inline size_t mmt__utf8_clean(const char *in, char *out, size_t cap, int flags, bool *cut)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in), n = 0;
    *cut = false;
    while (len) {
        int32_t cp;
        size_t k = mmt__utf8_next(s, len, &cp);
        const char *piece = (const char *)s;
        size_t plen = k;
        if ((flags & MMT_UTF8_XML) && (cp == '\t' || cp == '\n' || cp == '\r')) {
            piece = " ", plen = 1;
        } else if (cp < 0 || ((flags & MMT_UTF8_XML) && (cp < 0x20 || cp == 0xFFFE || cp == 0xFFFF))) {
            piece = MMT_UTF8_REPLACEMENT, plen = 3;
        }
        if (n + plen > cap) {
            *cut = true;
            break;
        }
        memcpy(out + n, piece, plen);
        n += plen;
        s += k;
        len -= k;
    }
    out[n] = '\0';
    return n;
}

/* `s` as a JSON string, quotes included, into out (room for len bytes, len >= 3): quote and
 * backslash escaped, control characters as \u00XX, invalid UTF-8 as \ufffd, so that a
 * strict parser reads it whatever the bytes. A string that does not fit is cut at a
 * character boundary. Returns the length written, without the NUL. */
static inline size_t mmt__json_string(char *out, size_t len, const char *s)
{
    const unsigned char *c = (const unsigned char *)s;
    size_t left = strlen(s), at = 0;
    out[at++] = '"';
    while (left) {
        int32_t cp;
        size_t k = mmt__utf8_next(c, left, &cp);
        char esc[8];
        const char *piece = esc;
        size_t n;
        if (cp < 0) {
            piece = "\\ufffd", n = 6;
        } else if (cp == '"' || cp == '\\') {
            esc[0] = '\\', esc[1] = (char)cp, n = 2;
        } else if (cp < 0x20) {
            static const char hex[] = "0123456789abcdef";
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[cp >> 4], esc[5] = hex[cp & 15], n = 6;
        } else {
            piece = (const char *)c, n = k;
        }
        if (at + n + 2 > len) break; /* room for the closing quote and the NUL */
        memcpy(out + at, piece, n);
        at += n;
        c += k;
        left -= k;
    }
    out[at++] = '"';
    out[at] = '\0';
    return at;
}

#endif
