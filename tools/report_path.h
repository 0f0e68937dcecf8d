/*
 * Report file names with a process id in them, as valgrind's --log-file has them: %p is
 * the process id, %% a percent sign, and a % before anything else stays as it is. The
 * preload library (MMT_OUT) and mmt-run (its report folder, --out) share them.
 */
#ifndef MMT_TOOLS_REPORT_PATH_H
#define MMT_TOOLS_REPORT_PATH_H

#include <stdbool.h>
#include <stdio.h>

/* Whether `pattern` holds a %p (not a %%p, which is the text "%p"). */
static inline bool mmt__has_pid_escape(const char *pattern)
{
    for (const char *c = pattern; *c; c++) {
        if (c[0] != '%') continue;
        if (c[1] == 'p') return true;
        if (c[1] == '%') c++;
    }
    return false;
}

/* `pattern` with each %p replaced by `pid` and each %% by %, into buf (len bytes). False,
 * with buf "", if it does not fit: a name cut short would be another file. */
static inline bool mmt__expand_pid(const char *pattern, long pid, char *buf, size_t len)
{
    size_t at = 0;
    for (const char *c = pattern; *c; c++) {
        char piece[24];
        size_t n = 1;
        piece[0] = *c;
        if (c[0] == '%' && c[1] == 'p') {
            n = (size_t)snprintf(piece, sizeof piece, "%ld", pid);
            c++;
        } else if (c[0] == '%' && c[1] == '%') {
            c++;
        }
        if (at + n >= len) {
            buf[0] = '\0';
            return false;
        }
        for (size_t k = 0; k < n; k++) buf[at++] = piece[k];
    }
    buf[at] = '\0';
    return true;
}

/* `text` with each % doubled, into buf (len bytes), so that it means itself in a pattern.
 * False if it does not fit. */
static inline bool mmt__escape_percent(const char *text, char *buf, size_t len)
{
    size_t at = 0;
    for (const char *c = text; *c; c++) {
        if (at + 2 >= len) return false;
        if (*c == '%') buf[at++] = '%';
        buf[at++] = *c;
    }
    buf[at] = '\0';
    return true;
}

#endif
