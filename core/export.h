/*
 * Formatting the counters (export.c), shared with the policy engine's mmt.format().
 */
#ifndef MMT_CORE_EXPORT_H
#define MMT_CORE_EXPORT_H

#include <stdarg.h>
#include <stddef.h>

#include "mmt/memory.h"

/* The figures a policy snapshot adds to mmt_meminfo_t. */
typedef struct mmt__extra {
    double rate, rss, lua, time;
} mmt__extra_t;

/* Writes m (and extra, if not NULL) in `format` into buf like snprintf: returns the length
 * the whole text needs (without the NUL), or MMT_EINVAL for an unknown format. */
int mmt__format(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                int format);

#endif
