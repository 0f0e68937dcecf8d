/*
 * Helpers shared by the cmocka tests: counter deltas, and running a function in a forked
 * child to observe a designed crash (its signal and what it wrote to stderr).
 */
#ifndef MMT_TESTUTIL_H
#define MMT_TESTUTIL_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmt/memory.h"

static inline mmt_meminfo_t meminfo_now(void)
{
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    return m;
}

typedef struct child_result {
    int signal;      /* the signal that ended the child, 0 if it exited */
    int exit_code;   /* its exit code if it exited */
    char err[4096];  /* what it wrote to stderr */
} child_result_t;

/* Runs fn(arg) in a forked child whose stderr is captured. A child that returns from fn
 * exits with status 0. */
static inline child_result_t run_in_child(void (*fn)(void *), void *arg)
{
    child_result_t r;
    memset(&r, 0, sizeof r);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        signal(SIGABRT, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], r.err + len, sizeof r.err - 1 - len)) > 0) len += (size_t)n;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    else r.exit_code = WEXITSTATUS(status);
    return r;
}

/* Runs under valgrind (whose preload library is in the environment). */
static inline bool under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

/* Ends a forked child with `code`. Under valgrind, through an exec: a child forked from a
 * threaded process holds blocks that only threads gone in the child pointed to (glibc's
 * own among them: the unwinder it loads at a thread's first cancellation), which
 * valgrind's leak check at the child's exit would call lost and turn into its error exit
 * code. The exec ends the child without that check; valgrind checks the parent. */
static inline _Noreturn void end_child(int code)
{
    if (under_valgrind()) {
        char command[32];
        snprintf(command, sizeof command, "exit %d", code);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    }
    _exit(code);
}

/* A sanitizer build's preload library cannot go into programs built without it (the
 * sanitizer's runtime must load first, and replaces malloc itself): tests that run real
 * programs under it skip there. The library's code is the core, which those builds test
 * everywhere else. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MMT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MMT_TEST_SANITIZED 1
#endif
#endif
#ifndef MMT_TEST_SANITIZED
#define MMT_TEST_SANITIZED 0
#endif
#define SKIP_IF_SANITIZED()                                                                \
    do {                                                                                   \
        if (MMT_TEST_SANITIZED) skip();                                                    \
    } while (0)

/* A new tag (or the existing one of that name under parent); fails the test if it cannot
 * be made. Tags live as long as the process: each test names its own. */
static inline mmt_tag_t new_tag(const char *name, mmt_tag_t parent)
{
    int id = mmt_tag_new(name, parent);
    if (id <= 0) fail_msg("mmt_tag_new(\"%s\", %u): %d", name, parent, id);
    return (mmt_tag_t)id;
}

/* The in_use of tag's subtree. */
static inline uint64_t tag_in_use(mmt_tag_t tag)
{
    mmt_meminfo_t m;
    int rc = mmt_tag_meminfo(tag, &m);
    if (rc != 0) fail_msg("mmt_tag_meminfo(%u): %d", tag, rc);
    return m.in_use;
}

/* The folder of this test program (build/<config>), where mmt-run and the preload library
 * are built beside it, into out; false if it cannot be read. */
static inline bool test_bin_dir(char *out, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    if (n <= 0) return false;
    out[n] = '\0';
    *strrchr(out, '/') = '\0';
    return true;
}

/* The path of `name` (a file of the source tree, "policies/demo.lua") from a test program
 * built in <tree>/build/...; in a buffer the next call reuses. */
static inline const char *tree_path(const char *name)
{
    static char path[4096 + 64];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *cut = strstr(exe, "/build/");
    assert_non_null(cut);
    snprintf(path, sizeof path, "%.*s/%s", (int)(cut - exe), exe, name);
    return path;
}

/* Asserts that `text` holds `needle`, printing both if not. */
/* Reads at most len - 1 bytes of the file at `path` into buf and ends them with a NUL;
 * returns how many bytes were read (0 if the file cannot be opened). The bytes may hold
 * NULs of their own: the count says where they end. */
static inline size_t read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    return n;
}

#define assert_contains(text, needle)                                                      \
    do {                                                                                   \
        if (!strstr((text), (needle)))                                                     \
            fail_msg("expected \"%s\" in:\n%s", (needle), (text));                         \
    } while (0)


/* Runs Debian's python3 (where python3-prometheus-client installs; another python3 may
 * come first on PATH) with `program`, the file at `input` on its stdin; what it printed
 * goes to out. Fails the test if python fails. */
static inline void python_on_file(const char *program, const char *input, char *out, size_t len)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c '%s' < '%s'", program, input);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    if (pclose(f) != 0) fail_msg("python failed on %s, with output:\n%s", input, out);
}

#endif
