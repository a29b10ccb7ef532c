/*
 * warden's native spawner (Linux): posix_spawn(3) instead of libuv's fork(2).
 *
 * glibc's posix_spawn starts the child with clone(CLONE_VM | CLONE_VFORK): nothing of the
 * supervisor's address space is copied and the child execs straight away, so a spawn costs the
 * same whatever the supervisor's heap size. libuv forks, which copies the page tables of the
 * whole process and then waits while the child tears that copy down in exec.
 *
 * Five calls, all synchronous and without callbacks into JavaScript:
 *   spawn(path, argv, envp, cwd, setsid, stdinPipe[, statusFd])
 *       -> [pid, fd0, fd1, fd2, fd3, fd4]   (fd0 is -1 when stdin is /dev/null; with `statusFd`,
 *                                            a sixth socket as the child's fd 5, for warden-reaper)
 *       -> [-errno]                          when the child could not be started
 *     The child gets fd 0 (/dev/null or a socket), fds 1-4 (sockets), a new session when
 *     `setsid`, every signal at its default disposition and an empty signal mask. The returned
 *     fds are the supervisor's ends, close-on-exec; the caller owns them.
 *   reap(pid) -> null (still running) | [exitCode, signalNumber] | [-1, -1] (not our child)
 *     waitpid(pid, WNOHANG) for exactly that pid: never another process's status.
 *   setDumpable(on) -> 0 | -errno
 *     prctl(PR_SET_DUMPABLE): off, processes of the same user (the tasks) can no longer read
 *     this process's memory or /proc/<pid>/environ, nor ptrace it.
 *   With `[cols, rows]` as an eighth argument the child's fds 0-2 are the slave side of a new
 *   pty (its controlling terminal when `setsid`), and fd0's slot returns the master.
 *   setWinsize(fd, cols, rows) -> 0 | -errno
 *     Resizes a pty (TIOCSWINSZ on its master; the child gets SIGWINCH).
 *   spinReadable(fd, micros) -> 1 | 0
 *     A bounded busy wait for `fd` to turn readable (the task side's spin-then-sleep wait).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHANNELS 6 /* fds 0-4, and fd 5 for warden-reaper's status */

static char *get_string(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char *s = malloc(length + 1);
  if (s == NULL) return NULL;
  if (napi_get_value_string_utf8(env, value, s, length + 1, &length) != napi_ok) {
    free(s);
    return NULL;
  }
  return s;
}

static void free_strings(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

/* A NULL-terminated copy of a JS array of strings; NULL on a bad value or no memory. */
static char **get_strings(napi_env env, napi_value array) {
  uint32_t n = 0;
  if (napi_get_array_length(env, array, &n) != napi_ok) return NULL;
  char **v = calloc((size_t)n + 1, sizeof(char *));
  if (v == NULL) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, array, i, &item) != napi_ok || (v[i] = get_string(env, item)) == NULL) {
      free_strings(v);
      return NULL;
    }
  }
  return v;
}

static napi_value int_array(napi_env env, const int *values, size_t n) {
  napi_value out, item;
  napi_create_array_with_length(env, n, &out);
  for (size_t i = 0; i < n; i++) {
    napi_create_int32(env, values[i], &item);
    napi_set_element(env, out, (uint32_t)i, item);
  }
  return out;
}

static napi_value failure(napi_env env, int err) {
  int v = -err;
  return int_array(env, &v, 1);
}

static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value args[8];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 6) {
    napi_throw_type_error(env, NULL, "spawn(path, argv, envp, cwd, setsid, stdinPipe[, statusFd[, [cols, rows]]])");
    return NULL;
  }
  napi_valuetype cwd_type;
  napi_typeof(env, args[3], &cwd_type);
  bool new_session = false, stdin_pipe = false;
  napi_get_value_bool(env, args[4], &new_session);
  napi_get_value_bool(env, args[5], &stdin_pipe);
  bool status_fd = false;
  if (argc > 6) napi_get_value_bool(env, args[6], &status_fd);
  const int CHANNELS = status_fd ? 6 : 5;
  /* pty mode: [cols, rows] */
  bool use_pty = false;
  uint32_t cols = 80, rows = 24;
  if (argc > 7) {
    bool is_array = false;
    napi_is_array(env, args[7], &is_array);
    if (is_array) {
      napi_value v;
      use_pty = true;
      if (napi_get_element(env, args[7], 0, &v) == napi_ok) napi_get_value_uint32(env, v, &cols);
      if (napi_get_element(env, args[7], 1, &v) == napi_ok) napi_get_value_uint32(env, v, &rows);
    }
  }
  int master = -1;
  char slave[128] = {0};

  char *path = get_string(env, args[0]);
  char **argv = get_strings(env, args[1]);
  char **envp = get_strings(env, args[2]);
  char *cwd = cwd_type == napi_string ? get_string(env, args[3]) : NULL;
  int pairs[MAX_CHANNELS][2];
  for (int i = 0; i < MAX_CHANNELS; i++) pairs[i][0] = pairs[i][1] = -1;
  int err = 0;
  if (path == NULL || argv == NULL || envp == NULL || (cwd_type == napi_string && cwd == NULL)) err = ENOMEM;

  if (err == 0 && use_pty) {
    /* The terminal: fds 0-2 of the child are its slave side, opened after setsid so that it
       becomes the controlling terminal of the new session; the supervisor keeps the master. */
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, slave, sizeof slave) != 0) {
      err = errno != 0 ? errno : EIO;
    } else {
      struct winsize size = {(unsigned short)rows, (unsigned short)cols, 0, 0};
      ioctl(master, TIOCSWINSZ, &size);
    }
  }
  for (int i = use_pty ? 3 : stdin_pipe ? 0 : 1; err == 0 && i < CHANNELS; i++) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]) != 0) err = errno;
  }

  pid_t pid = -1;
  if (err == 0) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    /* glibc's sigfillset leaves out its internal signals (32 up to SIGRTMIN: thread cancellation,
       setxid), and posix_spawn then hands them to the new program ignored, which libuv's fork
       path does not. Their bits are set by hand, so they start at their default too. */
    for (int sig = 32; sig < SIGRTMIN; sig++) {
      unsigned long *words = (unsigned long *)&all;
      const unsigned bits = 8 * sizeof(unsigned long);
      words[(sig - 1) / bits] |= 1UL << ((sig - 1) % bits);
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    if (use_pty) {
      posix_spawn_file_actions_addopen(&actions, 0, slave, O_RDWR, 0);
      posix_spawn_file_actions_adddup2(&actions, 0, 1);
      posix_spawn_file_actions_adddup2(&actions, 0, 2);
    } else if (stdin_pipe) {
      posix_spawn_file_actions_adddup2(&actions, pairs[0][1], 0);
    } else {
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    }
    /* dup2 onto fds 1-4 clears close-on-exec on the copies; the originals close at exec. */
    for (int i = use_pty ? 3 : 1; i < CHANNELS; i++) posix_spawn_file_actions_adddup2(&actions, pairs[i][1], i);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (new_session) flags |= POSIX_SPAWN_SETSID;
    posix_spawnattr_setflags(&attr, flags);
    err = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }

  free(path);
  free(cwd);
  free_strings(argv);
  free_strings(envp);
  for (int i = 0; i < CHANNELS; i++) {
    if (pairs[i][1] >= 0) close(pairs[i][1]);
    if (err != 0 && pairs[i][0] >= 0) close(pairs[i][0]);
  }
  if (err != 0) {
    if (master >= 0) close(master);
    return failure(env, err);
  }

  int out[CHANNELS + 1];
  out[0] = pid;
  for (int i = 0; i < CHANNELS; i++) out[i + 1] = pairs[i][0];
  if (use_pty) out[1] = master; /* fd 0's slot: the terminal's master, for reading and writing */
  return int_array(env, out, CHANNELS + 1);
}

/* setWinsize(fd, cols, rows) -> 0 | -errno: resizes a pty (the child gets SIGWINCH). */
static napi_value SetWinsize(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], out;
  int32_t fd = -1;
  uint32_t cols = 0, rows = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, args[0], &fd) != napi_ok || napi_get_value_uint32(env, args[1], &cols) != napi_ok ||
      napi_get_value_uint32(env, args[2], &rows) != napi_ok || fd < 0 || cols == 0 || rows == 0 || cols > 65535 || rows > 65535) {
    napi_throw_type_error(env, NULL, "setWinsize(fd, cols, rows) needs an fd and sizes from 1 to 65535");
    return NULL;
  }
  struct winsize size = {(unsigned short)rows, (unsigned short)cols, 0, 0};
  int rc = ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
  napi_create_int32(env, rc, &out);
  return out;
}

static napi_value Reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  int32_t pid = 0;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, arg, &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "reap(pid) needs a positive pid");
    return NULL;
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    napi_value none;
    napi_get_null(env, &none);
    return none;
  }
  int result[2] = {-1, -1};
  if (r == pid) {
    if (WIFEXITED(status)) {
      result[0] = WEXITSTATUS(status);
      result[1] = 0;
    } else if (WIFSIGNALED(status)) {
      result[0] = -1;
      result[1] = WTERMSIG(status);
    }
  }
  return int_array(env, result, 2);
}

static napi_value SetDumpable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, out;
  bool on = true;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_bool(env, arg, &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "setDumpable(on) needs a boolean");
    return NULL;
  }
  int rc = prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0) == 0 ? 0 : -errno;
  napi_create_int32(env, rc, &out);
  return out;
}


/*
 * spinReadable(fd, micros): polls `fd` without sleeping until it is readable (or has an error or
 * a hangup) or `micros` have passed, yielding the CPU between polls so that a peer on this CPU
 * still runs. 1 = readable, 0 = not within the budget. See lib/child/spin-wait.ts for when the
 * task side uses it.
 */
static napi_value SpinReadable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], out;
  int32_t fd = -1, micros = 0;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, args[0], &fd) != napi_ok || napi_get_value_int32(env, args[1], &micros) != napi_ok ||
      fd < 0 || micros < 0 || micros > 10000) {
    napi_throw_type_error(env, NULL, "spinReadable(fd, micros) needs an fd and 0..10000 microseconds");
    return NULL;
  }
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const int64_t limit = (int64_t)micros * 1000;
  int ready = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 0);
    if (r > 0 || (r < 0 && errno != EINTR)) {
      ready = 1;
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((int64_t)(t.tv_sec - t0.tv_sec) * 1000000000 + (t.tv_nsec - t0.tv_nsec) >= limit) break;
    sched_yield();
  }
  napi_create_int32(env, ready, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"spawn", NULL, Spawn, NULL, NULL, NULL, napi_default, NULL},
      {"reap", NULL, Reap, NULL, NULL, NULL, napi_default, NULL},
      {"setDumpable", NULL, SetDumpable, NULL, NULL, NULL, napi_default, NULL},
      {"spinReadable", NULL, SpinReadable, NULL, NULL, NULL, napi_default, NULL},
      {"setWinsize", NULL, SetWinsize, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 5, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
