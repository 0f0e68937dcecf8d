/*
 * Formatting the counters (export.c), shared with the policy engine's mmt.format().
 */
#ifndef MMT_CORE_EXPORT_H
#define MMT_CORE_EXPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmt/memory.h"

/* The figures a policy snapshot adds to mmt_meminfo_t. */
typedef struct mmt__extra {
    double rate, rss, lua, time;
} mmt__extra_t;

/* One tag's figures for the formats: its path and its subtree's counters. */
typedef struct mmt__tag_figures {
    const char *path; /* "cache/pages", not NUL-terminated: len bytes, never the root's "" */
    size_t len;
    mmt_meminfo_t info;
} mmt__tag_figures_t;

/* Writes m (and extra, if not NULL) in `format` into buf like snprintf: returns the length
 * the whole text needs (without the NUL), or MMT_EINVAL for an unknown format. */
int mmt__format(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                int format);

/* mmt__format, followed by ntags tags in the order given (path order, as
 * mmt__tag_path_compare sorts, keeps the text a tree): text, a line each under the
 * process's line; JSON, a "tags" object keyed by path; Prometheus, the mmt_tag_* families.
 * Then, with a machine reading (not NULL), the parts it has (cgroup.version != 0,
 * psi.valid, system.total != 0): text, a line each ("cgroup v1 PATH: current ..."); JSON,
 * a "machine" object; Prometheus, the mmt_cgroup_*, mmt_psi_* and mmt_system_* families.
 * With no tags and no machine, exactly mmt__format's text. */
int mmt__format_tags(char *buf, size_t len, const mmt_meminfo_t *m, const mmt__extra_t *extra,
                     const mmt__tag_figures_t *tags, size_t ntags, const mmt_machine_t *machine,
                     int format);

/* The machine's part of mmt__format_tags alone, as it follows the rest there (JSON: from
 * its leading `,"machine":`), into buf like snprintf: the length the whole text needs, or
 * MMT_EINVAL for an unknown format. For mmt-run's summary, which writes the process
 * tree's figures its own way and the machine's as the library's exports do. */
int mmt__format_machine(char *buf, size_t len, const mmt_machine_t *machine, int format);

/* What mmt_meminfo_write writes in `format`, read now (the counters, every tag's, the
 * machine's): into buf (len bytes) when it fits, else into memory of the backend's that
 * the caller frees; *text points at it either way (buf, or that memory). Returns its
 * length (without the NUL), or MMT_EINVAL for an unknown format or MMT_ENOMEM, with
 * *text == buf. */
int mmt__meminfo_text(int format, char *buf, size_t len, char **text);

/* One rule of a running policy, for the Prometheus families of the engine's textfile. */
typedef struct mmt__rule_figures {
    const char *name; /* NUL-terminated, any bytes: escaped as tag paths are */
    bool firing;
    uint64_t fired; /* times it fired since the engine started */
} mmt__rule_figures_t;

/* The families mmt_rule_firing (a gauge, 1 or 0) and mmt_rule_fired_total (a counter),
 * with HELP and TYPE and one sample a rule labelled rule="NAME", into buf like snprintf:
 * returns the length the whole text needs. Nothing for n == 0. */
int mmt__format_rules(char *buf, size_t len, const mmt__rule_figures_t *rules, size_t n);

#endif
