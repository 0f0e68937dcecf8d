/*
 * The time series libmmtmem-preload.so writes for `mmt-run --trace` and `--svg`: one CSV
 * row per sample, per rule event and at exit, written with write(2) from a stack buffer so
 * that a row can be written from anywhere, inside an allocation or a policy evaluation.
 *
 *   time_s,in_use_bytes,rss_bytes,allocated_bytes,freed_bytes,peak_bytes,allocations,event,rule,
 *   cgroup_current_bytes,cgroup_limit_bytes,psi_some10,psi_full10,available_bytes
 *
 * (one line in the file). time_s counts from the start of the process; event is sample,
 * fire, resolve or exit; rule names the rule of a fire or resolve row.
 *
 * The last five are the machine around the program, as mmt_machine_read finds it
 * (memory.h): the bytes charged to its memory cgroup, the limit that binds it (the lowest
 * of its own and its ancestors'), the memory pressure in percent averaged over 10 s (some
 * and full, as PSI has them), and the bytes /proc/meminfo says are available. A figure the
 * machine does not have is an empty field: both cgroup fields where there is no memory
 * cgroup, the limit where none is set, both PSI fields without PSI, available_bytes where
 * the kernel does not say. A sample row carries a reading at most 100 ms old (trace.c
 * says why); a rule event's row and the exit row, written on the program's own threads
 * (inside an allocation, in a signal handler that calls _exit), the sampler's latest:
 * they read no file.
 *
 * The file is CSV as RFC 4180 has it, in UTF-8, and no row is ever left out: a rule name
 * holding a comma, a double quote or a line break is quoted (its quotes doubled); bytes of
 * it that are not UTF-8 become U+FFFD; a name longer than MMT_TRACE_RULE_MAX bytes (after
 * that) is cut at a character boundary. Read it by the header's column names: columns may
 * be added at the end.
 */
#ifndef MMT_TOOLS_TRACE_H
#define MMT_TOOLS_TRACE_H

#include "mmt/memory.h"

#define MMT_TRACE_HEADER                                                                       \
    "time_s,in_use_bytes,rss_bytes,allocated_bytes,freed_bytes,peak_bytes,allocations,event,rule," \
    "cgroup_current_bytes,cgroup_limit_bytes,psi_some10,psi_full10,available_bytes"

/* The longest rule name a row holds, in bytes of UTF-8. */
#define MMT_TRACE_RULE_MAX 256

/* Opens `path` and starts the sampler thread. Returns 0, or -1 with errno set. */
int mmt__trace_start(const char *path);

/* A row for a rule event, with the counters the rule was judged on. */
void mmt__trace_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud);

/* Stops the sampler and writes the exit row; safe to call more than once, and on _exit. */
void mmt__trace_stop(void);

#endif
