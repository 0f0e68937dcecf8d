/*
 * Helpers for tests that run other programs: start one with its stdout and stderr in
 * files, run one to its end with its output captured, wait for one with a deadline, find a
 * free TCP port for a server, and end whatever a test left running below it
 * (test_servers.c, test_mmtrun.c, test_embed.c).
 *
 * Programs started here get SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE and SIGCHLD at their
 * default dispositions, whatever this program was started with (nohup, a background job):
 * mmt-run keeps an ignored signal ignored for its program, and a server that ignores
 * SIGTERM would not stop.
 */
#ifndef MMT_PROCUTIL_H
#define MMT_PROCUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "policyutil.h" /* now_seconds, sleep_ms */
#include "testutil.h"

/* The size of the file at `path`, or 0 if there is none. */
static inline long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* In a forked child about to exec: signals at their default dispositions and unblocked,
 * no core files, stdin from /dev/null. */
static inline void prepare_child(void)
{
    static const int defaults[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) signal(defaults[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0 && null != STDIN_FILENO) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
}

/* Starts argv[0] (a path, or a name looked up in PATH) with the NULL-terminated argv, its
 * stdout into the file `out_path` and its stderr into `err_path` (both truncated); returns
 * its process id. A program that cannot be started exits 127, with the reason in
 * `err_path`. */
static inline pid_t spawn_with_output(const char *const argv[], const char *out_path,
                                      const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prepare_child();
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        execvp(argv[0], (char *const *)argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* The wait status of child `pid` once it ends; fails the test, after killing it, if it is
 * still running after `seconds`. */
static inline int wait_for_exit(pid_t pid, double seconds)
{
    double end = now_seconds() + seconds;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) fail_msg("waitpid(%ld): %s", (long)pid, strerror(errno));
        if (now_seconds() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("process %ld was still running after %.0f s", (long)pid, seconds);
        }
        sleep_ms(20);
    }
}

/* The source tree's file `name` (e.g. "policies/high_water.lua") into buf, found from the
 * folder of the test programs, build/<config> or build/<variant>/<config>. */
static inline bool find_source_in(const char *bin_dir, const char *name, char *buf, size_t len)
{
    static const char *const ups[] = {"../..", "../../..", NULL};
    for (const char *const *up = ups; *up; up++) {
        snprintf(buf, len, "%s/%s/%s", bin_dir, *up, name);
        if (access(buf, R_OK) == 0) return true;
    }
    return false;
}

/* A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A wait status as a person reads it: "exit status 3" or "signal 9". */
static inline const char *describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, len, "signal %d", WTERMSIG(status));
    else snprintf(buf, len, "wait status %#x", (unsigned)status);
    return buf;
}

/* Runs argv (as spawn_with_output) to its end, its stdout and stderr together into out
 * (NUL-terminated; what does not fit is read and dropped); returns its exit status, or
 * 128 + the signal that ended it. Fails the test, after killing it, if it runs past
 * `seconds`. */
static inline int run_to_end(const char *const argv[], char *out, size_t len, double seconds)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prepare_child();
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        execvp(argv[0], (char *const *)argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    double end = now_seconds() + seconds;
    size_t n = 0;
    for (;;) {
        double left = end - now_seconds();
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(fds[0]);
            out[n < len ? n : len - 1] = '\0';
            fail_msg("%s was still running after %.0f s; its output:\n%s", argv[0], seconds, out);
        }
        char drain[4096];
        char *into = n + 1 < len ? out + n : drain;
        size_t room = n + 1 < len ? len - 1 - n : sizeof drain;
        ssize_t got = read(fds[0], into, room);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (into != drain) n += (size_t)got;
    }
    close(fds[0]);
    out[n] = '\0';
    int status = wait_for_exit(pid, seconds);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The parent of process `pid` and its state letter (R, S, Z, ...), from /proc; false if
 * it is gone. */
static inline bool process_parent(pid_t pid, pid_t *ppid, char *state)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    read_file(path, stat, sizeof stat);
    const char *end = strrchr(stat, ')'); /* the name in parentheses may hold anything */
    if (!end || !end[1] || !end[2]) return false;
    *state = end[2];
    *ppid = (pid_t)strtol(end + 3, NULL, 10);
    return true;
}

/* The processes below `root` (children, theirs, and so on) that have not ended: up to
 * `max` of them into `out`, parents before their children; returns how many. Zombies
 * count as ended. */
static inline int live_descendants(pid_t root, pid_t *out, int max)
{
    enum { MAX_PROCS = 4096 };
    static pid_t pids[MAX_PROCS], parents[MAX_PROCS];
    static char states[MAX_PROCS];
    int count = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && count < MAX_PROCS) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        if (process_parent((pid_t)pid, &parents[count], &states[count])) pids[count++] = (pid_t)pid;
    }
    closedir(d);
    /* Breadth first from root: out[0..n) is the frontier that grows. */
    int n = 0, seen = 0;
    pid_t frontier = root;
    for (;;) {
        for (int i = 0; i < count && n < max; i++)
            if (parents[i] == frontier && states[i] != 'Z' && states[i] != 'X') out[n++] = pids[i];
        if (seen == n) break;
        frontier = out[seen++];
    }
    return n;
}

/* Kills (SIGKILL) every process below this one that has not ended, and reaps every child:
 * for a test's teardown, so that a failed test leaves nothing running. Children of those
 * processes come back to this one once their parents die if it is a subreaper
 * (prctl(PR_SET_CHILD_SUBREAPER)); otherwise they go to init with the processes they
 * were found under already killed. */
static inline void kill_everything_below(void)
{
    pid_t found[256];
    for (int round = 0; round < 20; round++) {
        int n = live_descendants(getpid(), found, (int)(sizeof found / sizeof found[0]));
        for (int i = 0; i < n; i++) kill(found[i], SIGKILL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (n == 0) break;
        sleep_ms(50);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

#endif
