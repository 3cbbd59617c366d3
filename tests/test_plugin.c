/* The CUDA backend as a separately loaded part (src/backend/dispatch.c, backend.h): without a
 * GPU nothing of the CUDA runtime or cuBLAS is mapped, even after a fit on the CPU; the reason
 * says why; and the plugin search and its checks (FLEXLEARN_CUDA_LIB, the build directory, a
 * library that is not the plugin, a stale ABI) each give their own reason.
 *
 * The search is probed once per process, so each of those cases runs in a fresh child: this
 * binary re-executed as `test_plugin --child FLAGS` (FLAGS for fl__cuda_test_flags), which
 * prints "avail=", "reason=" and "maps=" (the CUDA libraries in /proc/self/maps) lines. The
 * children skip the driver probe so that the plugin paths run on a machine without a GPU too. */
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "learn_fixture.h"
#include "test.h"

extern char **environ;

/* The CUDA libraries this process maps, as "libcudart libcublas ..." ("" when none). */
static void cuda_maps(char *out, size_t n) {
  static const char *names[] = {"libcudart", "libcublas", "libflexlearn_cuda", "libcuda.so"};
  int seen[4] = {0};
  char line[4096];
  FILE *f = fopen("/proc/self/maps", "r");
  out[0] = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f))
    for (int i = 0; i < 4; i++)
      if (strstr(line, names[i])) seen[i] = 1;
  fclose(f);
  for (int i = 0; i < 4; i++)
    if (seen[i]) {
      size_t k = strlen(out);
      snprintf(out + k, n - k, "%s%s", k ? " " : "", names[i]);
    }
}

/* The path of the first mapped library whose name contains `name`, into path ("" if none). */
static void mapped_path(const char *name, char *path, size_t n) {
  char line[4096];
  FILE *f = fopen("/proc/self/maps", "r");
  path[0] = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    char *p = strchr(line, '/');
    if (p && strstr(p, name)) {
      p[strcspn(p, "\n")] = 0;
      snprintf(path, n, "%s", p);
      break;
    }
  }
  fclose(f);
}

/* ---- the child ---- */
static int child_main(unsigned flags) {
  fl__cuda_test_flags(flags);
  int avail = fl_cuda_available();
  char maps[256];
  cuda_maps(maps, sizeof maps);
  printf("avail=%d\nreason=%s\nmaps=%s\n", avail, fl_backend_cuda_reason(), maps);
  printf("default=%s\n", fl_device_name(fl_default_device()));
  return 0;
}

/* ---- the parent's side ---- */
typedef struct child {
  int status;                 /* exit status (-1: did not run) */
  int avail;
  char reason[2048], maps[256], device[16];
  char out[16384];            /* everything it printed, stdout and stderr */
} child;

/* Runs this binary as a child with fl__cuda_test_flags(flags) and FLEXLEARN_CUDA_LIB = lib
 * (unset when NULL). */
static void run_child(child *c, unsigned flags, const char *lib) {
  memset(c, 0, sizeof *c);
  c->status = -1, c->avail = -1;
  char exe[4096], fl[32], libvar[4200], lsan[1200];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) return;
  exe[k] = 0;
  snprintf(fl, sizeof fl, "%u", flags);
  char *argv[] = {exe, "--child", fl, NULL};
  /* the environment, less FLEXLEARN_CUDA_LIB and LSAN_OPTIONS (whose report of the suppressions
   * used would land in the output), plus ours */
  size_t n = 0;
  while (environ[n]) n++;
  char **envp = calloc(n + 3, sizeof *envp);
  size_t m = 0;
  const char *lo = getenv("LSAN_OPTIONS");
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "FLEXLEARN_CUDA_LIB=", 19) && strncmp(environ[i], "LSAN_OPTIONS=", 13))
      envp[m++] = environ[i];
  snprintf(lsan, sizeof lsan, "LSAN_OPTIONS=%s%sprint_suppressions=0", lo ? lo : "", lo && *lo ? ":" : "");
  envp[m++] = lsan;
  if (lib) snprintf(libvar, sizeof libvar, "FLEXLEARN_CUDA_LIB=%s", lib), envp[m++] = libvar;
  envp[m] = NULL;

  int fd[2];
  if (pipe(fd)) return free(envp);
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 1), dup2(fd[1], 2);
    close(fd[0]), close(fd[1]);
    execve(exe, argv, envp);
    _exit(127);
  }
  close(fd[1]);
  free(envp);
  size_t len = 0;
  ssize_t r;
  while ((r = read(fd[0], c->out + len, sizeof c->out - 1 - len)) > 0 || (r < 0 && errno == EINTR))
    if (r > 0) len += (size_t)r;
  c->out[len] = 0;
  close(fd[0]);
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return;
  c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  for (char *line = c->out; line && *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    if (!strncmp(line, "avail=", 6)) c->avail = atoi(line + 6);
    else if (!strncmp(line, "reason=", 7)) snprintf(c->reason, sizeof c->reason, "%s", line + 7);
    else if (!strncmp(line, "maps=", 5)) snprintf(c->maps, sizeof c->maps, "%s", line + 5);
    else if (!strncmp(line, "default=", 8)) snprintf(c->device, sizeof c->device, "%s", line + 8);
    if (end) *end = '\n';
    line = end ? end + 1 : NULL;
  }
}

#define EXPECT_CHILD(c, cond) \
  EXPECTF((c).status == 0 && (cond), "%s\n  child (exit %d) printed:\n%s", #cond, (c).status, (c).out)

#ifdef FL_HAVE_CUDA
#define NEED_CUDA_BUILD() do {} while (0)
#else
#define NEED_CUDA_BUILD() SKIP("this build has no CUDA backend (make CUDA=1)")
#endif

/* ---- tests ---- */

/* Without a GPU: CUDA unavailable, the CPU by default, and after a fit on the CPU neither the
 * CUDA runtime, nor cuBLAS, nor the plugin is mapped. */
static void test_no_gpu_maps_no_cuda_runtime(void) {
  if (fl_cuda_available()) SKIP("a GPU is present: the no-GPU path cannot be checked");
  EXPECT(fl_backend_cuda() == NULL);
  EXPECT(fl_default_device() == FL_CPU);
  fl_dataset *tr = fx_dataset(64, 4, 1), *va = fx_dataset(32, 4, 2);
  fl_dataloaders dls;
  FL_CHECK(fl_get_dls(&dls, tr, va, 16, 3, 0, 1) == FL_OK, "fl_get_dls: %s", fl_last_error());
  fl_module *model = fl_get_model(3, 4, 8, 4);
  fl_callback *cbs[] = {fl_train_cb_new(1), fl_device_cb_new(fl_default_device())};
  fl_learner *l = fl_learner_new(model, &dls, fl_cross_entropy, 0.1f, cbs, 2, fl_sgd_new, NULL);
  EXPECTF(fl_fit(l, 1, 1, 1, NULL, 0, 0) == FL_OK, "fit: %s", fl_last_error());
  char maps[256];
  cuda_maps(maps, sizeof maps);
  EXPECTF(!strstr(maps, "libcudart") && !strstr(maps, "libcublas") && !strstr(maps, "libflexlearn_cuda"),
          "after a CPU fit this process maps: %s", maps);
  fl_learner_free(l);
  fl_module_free(model);
  fl_dataloaders_free(&dls);
  fl_dataset_free(tr), fl_dataset_free(va);
}

/* The reason is a non-empty line naming CUDA, and stable across calls. */
static void test_reason(void) {
  const char *r = fl_backend_cuda_reason();
  EXPECT(r != NULL && r[0] != 0 && !strchr(r, '\n'));
  EXPECT(r == fl_backend_cuda_reason());
  if (fl_cuda_available()) {
    EXPECT(!strcmp(r, "the CUDA backend is available"));
    return;
  }
  EXPECTF(strstr(r, "CUDA") != NULL, "reason: %s", r);
#ifndef FL_HAVE_CUDA
  EXPECT(!strcmp(r, "this build has no CUDA backend (make CUDA=1)"));
#endif
}

/* FLEXLEARN_CUDA_LIB names a file that is not there: the reason names the path, and nothing
 * else is tried (nothing CUDA is mapped). */
static void test_env_path_missing(void) {
  NEED_CUDA_BUILD();
  const char *p = "/nonexistent/fl_test_plugin/libflexlearn_cuda.so";
  child c;
  run_child(&c, FL__CUDA_NO_DRIVER_PROBE, p);
  EXPECT_CHILD(c, c.avail == 0);
  EXPECT_CHILD(c, strstr(c.reason, p) != NULL && strstr(c.reason, "FLEXLEARN_CUDA_LIB") != NULL);
  EXPECT_CHILD(c, !strstr(c.maps, "libcudart") && !strstr(c.maps, "libflexlearn_cuda"));
  EXPECT_CHILD(c, !strcmp(c.device, "cpu"));
}

/* FLEXLEARN_CUDA_LIB names a shared library that is not the plugin (zlib): refused, named. */
static void test_env_not_a_plugin(void) {
  NEED_CUDA_BUILD();
  char z[4096];
  mapped_path("libz.so", z, sizeof z);
  if (!z[0]) SKIP("libz is not mapped by this test (no library to use as a non-plugin)");
  child c;
  run_child(&c, FL__CUDA_NO_DRIVER_PROBE, z);
  EXPECT_CHILD(c, c.avail == 0);
  EXPECT_CHILD(c, strstr(c.reason, z) != NULL && strstr(c.reason, "not a flexlearn CUDA backend") != NULL);
}

/* No FLEXLEARN_CUDA_LIB: the plugin is found beside this binary's build directory (tests live
 * in BUILD/tests/, the plugin in BUILD/) and loaded; without a GPU it then says why itself
 * (the CUDA runtime's reason), with a GPU it is available. */
static void test_plugin_found_in_build_dir(void) {
  NEED_CUDA_BUILD();
  child c;
  run_child(&c, FL__CUDA_NO_DRIVER_PROBE, NULL);
  EXPECT_CHILD(c, strstr(c.maps, "libflexlearn_cuda") != NULL);
  EXPECT_CHILD(c, c.reason[0] && !strstr(c.reason, "not found") && !strstr(c.reason, "stale"));
  if (c.avail == 1) EXPECT_CHILD(c, !strcmp(c.device, "cuda"));
  else EXPECT_CHILD(c, c.avail == 0 && !strcmp(c.device, "cpu"));
}

/* A plugin of another ABI is refused as stale, with both ABI numbers in the reason. */
static void test_stale_plugin_refused(void) {
  NEED_CUDA_BUILD();
  child c;
  run_child(&c, FL__CUDA_NO_DRIVER_PROBE | FL__CUDA_WRONG_ABI, NULL);
  EXPECT_CHILD(c, c.avail == 0 && !strcmp(c.device, "cpu"));
  EXPECT_CHILD(c, strstr(c.reason, "stale") != NULL && strstr(c.reason, "ABI") != NULL &&
                      strstr(c.reason, "libflexlearn_cuda.so") != NULL);
}

/* The real probe in a fresh process agrees with this one (and, without a GPU, maps nothing). */
static void test_child_probe_agrees(void) {
  child c;
  run_child(&c, 0, NULL);
  EXPECT_CHILD(c, c.avail == fl_cuda_available());
  EXPECT_CHILD(c, !strcmp(c.reason, fl_backend_cuda_reason()));
  if (!fl_cuda_available()) EXPECT_CHILD(c, !strstr(c.maps, "libcudart") && !strstr(c.maps, "libcublas"));
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--child")) return child_main((unsigned)strtoul(argv[2], NULL, 10));
  fl_init(2);
  RUN(test_no_gpu_maps_no_cuda_runtime);
  RUN(test_reason);
  RUN(test_env_path_missing);
  RUN(test_env_not_a_plugin);
  RUN(test_plugin_found_in_build_dir);
  RUN(test_stale_plugin_refused);
  RUN(test_child_probe_agrees);
  return test_summary();
}
