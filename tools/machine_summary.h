/*
 * The machine around the program in mmt-run's summary: what mmt_machine_read (memory.h)
 * found when the program had ended, in the summary's three formats. JSON and Prometheus
 * as the library's own exports write them (mmt_meminfo_write), so that one reader takes
 * both; text, one line of mmt-run's own. A part the machine does not have (no memory
 * cgroup, no PSI, no /proc/meminfo) is left out of each.
 */
#ifndef MMT_TOOLS_MACHINE_SUMMARY_H
#define MMT_TOOLS_MACHINE_SUMMARY_H

#include <stdio.h>

#include "mmt/memory.h"

/* One line, "mmt-run: cgroup v2, limit 64 MiB: 27.9 MiB charged at exit, 0 OOM kills;
 * memory pressure some 0.00%, full 0.00% (10 s); 21.3 GiB of 31.3 GiB available", with
 * the parts the machine has; nothing if it has none. */
void mmt__machine_text(FILE *out, const mmt_machine_t *m);

/* `,"machine":{...}`, to follow a member of the summary's object: "cgroup", "psi" and
 * "system" objects, those the machine has; nothing if it has none. A limit that is not set
 * is null. */
void mmt__machine_json(FILE *out, const mmt_machine_t *m);

/* The mmt_cgroup_*, mmt_psi_* and mmt_system_* families, each with HELP and TYPE. A limit
 * that is not set is +Inf. */
void mmt__machine_prometheus(FILE *out, const mmt_machine_t *m);

#endif
