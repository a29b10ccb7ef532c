/*
 * warden-reaper: the leader of a task under warden's subreaper tier (Linux).
 *
 *   warden-reaper <path> <argv0> [args...]      (fd 5: the status socket to warden)
 *
 * It makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so that every process of the task
 * that loses its parent (a daemon that double-forks, whatever it does to its environment or its
 * session) is re-parented to it instead of to init, and the parent-pid walk from it finds the
 * whole task. Then it runs the command as its only direct child, in its own process group and
 * session (the ones warden gave it), with every signal at its default and fds 0-4 as given.
 *
 * What it writes on fd 5, one line each:
 *   "exit <code> <signal>\n"   when the command ends: its exit code and 0, or -1 and the signal
 * and it then closes fd 5. It goes on reaping every orphan handed to it, and exits once it has
 * no child left, with the command's status (the code, or 128 + the signal).
 *
 * Signals: it ignores every signal it may (warden signals the task's process group, so the
 * command gets them directly); SIGKILL ends it like any member. It holds none of fds 0-4 once the
 * command runs, so the task's pipes reach EOF when the task's own processes close them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATUS_FD 5

extern char **environ;

static void say(const char *what, const char *detail) {
  /* fd 2 is the task's stderr: a failure to start shows where the task's output goes. */
  dprintf(2, "warden-reaper: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static int fatal_signal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    say("usage: warden-reaper <path> <argv0> [args...] (run by warden, with its status socket as fd 5)", NULL);
    return 125;
  }
  if (fcntl(STATUS_FD, F_GETFD) < 0) {
    say("fd 5 (the status socket to warden) is not open", NULL);
    return 125;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    say("cannot become a child subreaper", strerror(errno));
    return 125;
  }

  /* Ignore what can be ignored before the command exists, so no signal meant for the task ends
     the reaper first. SIGCHLD stays at its default: ignoring it would reap children unseen. */
  struct sigaction ignore;
  memset(&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD || sig == SIGCONT || fatal_signal(sig)) continue;
    sigaction(sig, &ignore, NULL); /* fails harmlessly for glibc's reserved signals */
  }

  /* The command starts through posix_spawn (glibc: CLONE_VM | CLONE_VFORK, so nothing is
     copied), with every signal at its default, none blocked, and without fd 5. A subreaper mark
     is not inherited, so the command is an ordinary process. */
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  for (int sig = 32; sig < SIGRTMIN; sig++) { /* glibc's sigfillset leaves its internal signals out */
    unsigned long *words = (unsigned long *)&all;
    const unsigned bits = 8 * sizeof(unsigned long);
    words[(sig - 1) / bits] |= 1UL << ((sig - 1) % bits);
  }
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclose(&actions, STATUS_FD);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  const char *path = argv[1];
  char **args = argv + 2;
  pid_t command = -1;
  int err = posix_spawn(&command, path, &actions, &attr, args, environ);
  if (err == ENOEXEC) {
    /* An executable without #!: run it with /bin/sh, as execvp does. */
    int n = argc - 2;
    char **sh = calloc((size_t)n + 2, sizeof(char *));
    if (sh == NULL) {
      err = ENOMEM;
    } else {
      sh[0] = "/bin/sh";
      sh[1] = (char *)path;
      for (int i = 1; i < n; i++) sh[i + 1] = args[i];
      err = posix_spawn(&command, "/bin/sh", &actions, &attr, sh, environ);
      free(sh);
    }
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    say("cannot run the command", strerror(err));
    return err == ENOENT ? 127 : 126;
  }

  /* The command holds the task's fds now; the reaper lets go of them. */
  int devnull = open("/dev/null", O_RDWR);
  for (int fd = 0; fd <= 2; fd++) {
    if (devnull >= 0) dup2(devnull, fd);
    else close(fd);
  }
  if (devnull > 2) close(devnull);
  close(3);
  close(4);

  int result = 125;
  int reported = 0;
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: nothing left to reap */
    }
    if (pid != command || reported) continue; /* an orphan, reaped */
    int code = -1, sig = 0;
    if (WIFEXITED(status)) {
      code = WEXITSTATUS(status);
      result = code;
    } else if (WIFSIGNALED(status)) {
      sig = WTERMSIG(status);
      result = 128 + sig;
    } else {
      continue;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "exit %d %d\n", code, sig);
    while (write(STATUS_FD, line, (size_t)n) < 0 && errno == EINTR) {}
    close(STATUS_FD);
    reported = 1;
  }
  return result;
}
