/*
 * A program that keeps a log of the signals it gets, for the tests of mmt-run's signal
 * forwarding (tests/test_mmtrun.c):
 *
 *   e2e_signals PIDFILE LOGFILE
 *
 * Once its handlers are in place it writes its process id into PIDFILE. Each SIGINT,
 * SIGHUP and SIGQUIT it gets adds a line to LOGFILE ("INT", "HUP", "QUIT") and changes
 * nothing else; SIGTERM adds "TERM" and ends it with exit status 40 + the number of
 * signals it got before. It ends by itself (SIGALRM) after 60 s, so a test that goes
 * wrong leaves nothing running.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_fd = -1;              /* written by the handler only */
static volatile sig_atomic_t counted; /* signals before SIGTERM */
static volatile sig_atomic_t terminated;

static void on_signal(int sig)
{
    const char *name = sig == SIGINT ? "INT\n" : sig == SIGHUP ? "HUP\n" : sig == SIGQUIT ? "QUIT\n"
                                                                                        : "TERM\n";
    ssize_t w = write(log_fd, name, strlen(name));
    (void)w;
    if (sig == SIGTERM) terminated = 1;
    else counted++;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: e2e_signals PIDFILE LOGFILE\n");
        return 2;
    }
    log_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        perror(argv[2]);
        return 2;
    }
    /* All four blocked except while waiting, so that a handler never runs half-way
     * through another. */
    static const int handled[] = {SIGINT, SIGHUP, SIGQUIT, SIGTERM};
    sigset_t block, wait_mask;
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) sigaddset(&block, handled[i]);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_mask = block;
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) sigaction(handled[i], &sa, NULL);
    alarm(60);

    /* Written beside it and renamed: whoever waits for the file never reads half of it. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 || rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        return 2;
    }
    while (!terminated) sigsuspend(&wait_mask);
    return 40 + counted;
}
