/* Test helpers shared by the tests that run the flexlearn CLI or read back the files it wrote:
 * whole-file reads and writes, and running the CLI with its stdout / stderr caught in files of a
 * test directory. Header-only (static inline: a file uses what it needs). */
#ifndef FL_TESTS_CLI_RUN_H
#define FL_TESTS_CLI_RUN_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The file's first n - 1 bytes into buf, NUL-terminated; the byte count (0 and "" if unreadable). */
static inline size_t read_file(const char *p, char *buf, size_t n) {
  FILE *f = fopen(p, "rb");
  if (!f) return buf[0] = 0, 0;
  size_t k = fread(buf, 1, n - 1, f);
  buf[k] = 0;
  fclose(f);
  return k;
}

/* The whole file, malloc'd (free it); NULL and *n = 0 if unreadable. */
static inline unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return *n = 0, NULL;
  fseek(f, 0, SEEK_END);
  long k = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(k > 0 ? (size_t)k : 1);
  *n = b ? fread(b, 1, (size_t)(k > 0 ? k : 0), f) : 0;
  fclose(f);
  return b;
}

static inline void write_file(const char *p, const void *b, size_t n) {
  FILE *f = fopen(p, "wb");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", p);
    abort();
  }
  if (n) fwrite(b, 1, n, f);
  fclose(f);
}

/* Starts `cli` with args (NULL-terminated) and env ("NAME=VALUE" or NULL) in the background,
 * stdout and stderr into dir/stdout.txt and dir/stderr.txt. The sanitizers' list of used
 * suppressions is turned off: it would look like CLI output. */
static inline pid_t cli_spawn(const char *cli, const char *dir, const char *env, const char *const *args) {
  char op[256], ep[256];
  snprintf(op, sizeof op, "%s/stdout.txt", dir), snprintf(ep, sizeof ep, "%s/stderr.txt", dir);
  const char *argv[64];
  int n = 0;
  argv[n++] = cli;
  for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    const char *lo = getenv("LSAN_OPTIONS");
    char lsan[1024];
    snprintf(lsan, sizeof lsan, "%s%sprint_suppressions=0", lo ? lo : "", lo && *lo ? ":" : "");
    setenv("LSAN_OPTIONS", lsan, 1);
    if (env) putenv((char *)env);
    if (!freopen(op, "w", stdout) || !freopen(ep, "w", stderr)) _exit(126);
    execv(cli, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Waits for it (timeout_s at most, then SIGKILL and -1), reads its stdout into out and stderr
 * into err (both NUL-terminated) and removes the files; the exit code, or 128 + the signal. */
static inline int cli_finish(pid_t pid, const char *cli, const char *dir, int timeout_s, char *out, size_t on,
                             char *err, size_t en) {
  char op[256], ep[256];
  snprintf(op, sizeof op, "%s/stdout.txt", dir), snprintf(ep, sizeof ep, "%s/stderr.txt", dir);
  int status = 0;
  for (int waited = 0;; waited++) {   /* 10 ms steps */
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (waited > 100 * timeout_s) {
      kill(pid, SIGKILL), waitpid(pid, &status, 0);
      fprintf(stderr, "%s: timed out\n", cli);
      return -1;
    }
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  }
  read_file(op, out, on), read_file(ep, err, en);
  unlink(op), unlink(ep);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

#endif
