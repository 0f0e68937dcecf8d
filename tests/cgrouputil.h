/*
 * A memory cgroup of a test's own, made below the one the test runs in (as mmt_machine_read
 * finds it), with a limit; processes join it by id, and it is removed at the end of the
 * test. Where the machine offers none a test can write (no memory hierarchy, not root, a
 * read-only /sys/fs/cgroup, cgroup v2 without the memory controller for children), making
 * one fails with the reason, which the test prints as it skips.
 *
 * On cgroup v1 the limit is memory.limit_in_bytes; on v2, memory.max. Swap is not limited:
 * the machines here have none (a test that needs a process pushed into its limit says so
 * where the machine has swap).
 */
#ifndef MMT_CGROUPUTIL_H
#define MMT_CGROUPUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmt/memory.h"
#include "policyutil.h" /* sleep_ms */

/* ThreadSanitizer's shadow memory (several times what a process touches) and valgrind's
 * (a forked child stays under it) are charged to the cgroup too: a child touching tens of
 * MiB under a limit of tens of MiB is killed. The tests that run such a child skip there. */
#if defined(__SANITIZE_THREAD__)
#define CG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CG_TSAN 1
#endif
#endif
#ifndef CG_TSAN
#define CG_TSAN 0
#endif
#define SKIP_IF_SHADOWED_IN_CGROUP()                                                           \
    do {                                                                                   \
        if (CG_TSAN || under_valgrind()) {                                                 \
            print_message("skipped: %s's shadow memory is charged to the cgroup too\n",    \
                          CG_TSAN ? "ThreadSanitizer" : "valgrind");                       \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

typedef struct test_cgroup {
    int version; /* 0: not made */
    char dir[1024];
} test_cgroup_t;

/* Writes text into the file `name` of folder `dir`; 0 or an errno value. */
static inline int cg_write(const char *dir, const char *name, const char *text)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n == (ssize_t)strlen(text) ? 0 : n < 0 ? errno : EIO;
    close(fd);
    return err;
}

/* Sets the cgroup's hard limit (bytes; 0 for none). 0 or an errno value. */
static inline int cg_set_limit(const test_cgroup_t *cg, uint64_t limit)
{
    char text[32];
    if (limit) snprintf(text, sizeof text, "%" PRIu64, limit);
    else snprintf(text, sizeof text, cg->version == 2 ? "max" : "-1");
    return cg_write(cg->dir, cg->version == 2 ? "memory.max" : "memory.limit_in_bytes", text);
}

/* Makes a cgroup below this process's memory cgroup, limited to `limit` bytes (0: no
 * limit). Returns 0; or -1 with the reason in why. */
static inline int cg_make(test_cgroup_t *cg, uint64_t limit, char *why, size_t len)
{
    static unsigned made;
    *cg = (test_cgroup_t){0};
    mmt_machine_t m;
    if (!(mmt_machine_read(&m, MMT_MACHINE_CGROUP) & MMT_MACHINE_CGROUP)) {
        snprintf(why, len, "this process is in no memory cgroup the library can find "
                           "(/proc/self/cgroup, /proc/self/mountinfo)");
        return -1;
    }
    snprintf(cg->dir, sizeof cg->dir, "%s/mmt-test-%d-%u", m.cgroup.path, (int)getpid(), made++);
    if (mkdir(cg->dir, 0755) != 0) {
        snprintf(why, len, "cannot make a cgroup in %s: %s", m.cgroup.path, strerror(errno));
        return -1;
    }
    cg->version = m.cgroup.version;
    if (cg->version == 2) {
        /* The controller is the parent's to give its children: asked for, where the
         * parent may (a cgroup with processes of its own may not). */
        char path[1100];
        snprintf(path, sizeof path, "%s/memory.max", cg->dir);
        if (access(path, F_OK) != 0) {
            int err = cg_write(m.cgroup.path, "cgroup.subtree_control", "+memory");
            if (err || access(path, F_OK) != 0) {
                snprintf(why, len, "cgroup v2: the memory controller is not on for the "
                                   "children of %s, and cannot be turned on: %s",
                         m.cgroup.path, err ? strerror(err) : "no memory.max after all");
                rmdir(cg->dir);
                cg->version = 0;
                return -1;
            }
        }
    }
    int err = cg_set_limit(cg, limit);
    if (err) {
        snprintf(why, len, "cannot set the limit of %s: %s", cg->dir, strerror(err));
        rmdir(cg->dir);
        cg->version = 0;
        return -1;
    }
    return 0;
}

/* Moves process `pid` (0: the caller) into the cgroup; 0 or an errno value. */
static inline int cg_join(const test_cgroup_t *cg, pid_t pid)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)(pid ? pid : getpid()));
    return cg_write(cg->dir, "cgroup.procs", text);
}

/* Removes the cgroup once its processes are gone (waited for: up to 5 s). */
static inline void cg_remove(test_cgroup_t *cg)
{
    if (!cg->version) return;
    for (int i = 0; i < 500 && rmdir(cg->dir) != 0 && errno == EBUSY; i++) sleep_ms(10);
    cg->version = 0;
}

#endif
