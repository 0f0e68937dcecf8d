/*
 * The fields of mmt_meminfo_t, listed once. Everything that names or walks the counters
 * is made from this list: the per-thread slots and their sums (counters.c), the text, JSON
 * and Prometheus formats (export.c), the Lua snapshot and mmt.format (module.c), and the
 * metrics of declarative rules (rules.c). A field added to mmt_meminfo_t (memory.h) and
 * here reaches all of them; the static assertions in export.c keep the two in step.
 *
 *   X(name, kind, unit, type, help)
 *     kind  SUM_FIRST: a per-thread count of what was given back (freed, frees), summed
 *           before the rest so that a reading never shows more given back than taken
 *           (see mmt_meminfo); SUM: a per-thread count, summed after; DERIVED: computed
 *           by mmt_meminfo (in_use, peak), no slot field.
 *     unit  BYTES or CALLS: "_bytes" in the Prometheus name and " B" in the text.
 *     type  COUNTER or GAUGE, as Prometheus has it ("_total" ends a counter's name).
 *     help  the Prometheus HELP text.
 * Each field is also exported per tag (the tag's subtree), as mmt_tag_<name>... with a
 * `tag` label.
 */
#ifndef MMT_CORE_FIELDS_H
#define MMT_CORE_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mmt/memory.h"

#define MMT__MEMINFO_FIELDS(X)                                                           \
    X(allocated, SUM, BYTES, COUNTER, "Bytes ever allocated.")                           \
    X(freed, SUM_FIRST, BYTES, COUNTER, "Bytes ever freed.")                             \
    X(in_use, DERIVED, BYTES, GAUGE, "Bytes in use (allocated - freed).")                \
    X(peak, DERIVED, BYTES, GAUGE, "Highest number of bytes in use seen.")               \
    X(allocations, SUM, CALLS, COUNTER, "Successful allocation calls.")                  \
    X(frees, SUM_FIRST, CALLS, COUNTER, "Calls that freed a block.")                     \
    X(reallocs, SUM, CALLS, COUNTER, "Calls that resized a live block.")

#define MMT__UNIT_BYTES "_bytes"
#define MMT__UNIT_CALLS ""
#define MMT__TYPE_COUNTER "counter"
#define MMT__TYPE_GAUGE "gauge"
#define MMT__SUFFIX_COUNTER "_total"
#define MMT__SUFFIX_GAUGE ""

/* Each field's index in the list (and in mmt_meminfo_t, whose fields are all uint64_t). */
enum {
#define MMT__X(name, kind, unit, type, help) MMT__FIELD_##name,
    MMT__MEMINFO_FIELDS(MMT__X)
#undef MMT__X
    MMT__NFIELDS
};

typedef struct mmt__field {
    const char *name;   /* as in mmt_meminfo_t, JSON, the Lua snapshot and rules */
    const char *metric; /* Prometheus name: mmt_<name>[_bytes][_total] */
    const char *type;   /* counter or gauge */
    const char *help;
    size_t offset;      /* in mmt_meminfo_t */
    bool bytes;         /* counts bytes (" B" in the text) */
    const char *tag_metric; /* the same per tag: mmt_tag_<name>[_bytes][_total]{tag="..."} */
    const char *tag_help;
} mmt__field_t;

extern const mmt__field_t mmt__fields[MMT__NFIELDS];

/* Field `i` of `m`. */
static inline uint64_t mmt__field_value(const mmt_meminfo_t *m, int i)
{
    uint64_t v;
    memcpy(&v, (const char *)m + mmt__fields[i].offset, sizeof v);
    return v;
}

/* Sets field `i` of `m`. */
static inline void mmt__field_set(mmt_meminfo_t *m, int i, uint64_t v)
{
    memcpy((char *)m + mmt__fields[i].offset, &v, sizeof v);
}

#endif
