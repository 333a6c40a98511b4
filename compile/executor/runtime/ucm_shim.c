/* The few runtime symbols TVM-generated kernels call, without the TVM runtime:
 * workspace from a static pool (LIFO, as the kernels free in reverse order), a serial
 * "parallel" launch, and error messages kept in a static buffer for ucm_last_error(). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <tvm/runtime/c_backend_api.h>
#include <tvm/ffi/c_api.h>

#include "ucm_config.h"
#include "ucm_model.h"
#include "ucm_shim.h"

#define UCM_WS_MAX_DEPTH 64

static uint8_t ucm_workspace[UCM_WORKSPACE_BYTES + 64] __attribute__((aligned(64)));
static size_t ws_top;
static size_t ws_saved_top[UCM_WS_MAX_DEPTH];
static void *ws_block[UCM_WS_MAX_DEPTH];
static int ws_depth;
static char last_error[512];

void ucm_set_error(const char *message) {
  snprintf(last_error, sizeof last_error, "%s", message);
}

const char *ucm_last_error(void) { return last_error; }

static size_t ws_peak;

size_t ucm_workspace_peak(void) { return ws_peak; }

void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
  (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;
  size_t start = (ws_top + 63u) & ~(size_t)63u;
  if (ws_depth == UCM_WS_MAX_DEPTH || start + nbytes > UCM_WORKSPACE_BYTES) {
    snprintf(last_error, sizeof last_error,
             "workspace pool exhausted: a kernel asked for %llu bytes with %zu of %d in use; "
             "rebuild with a larger -DUCM_WORKSPACE_BYTES",
             (unsigned long long)nbytes, ws_top, UCM_WORKSPACE_BYTES);
    return NULL;
  }
  ws_saved_top[ws_depth] = ws_top;
  ws_block[ws_depth++] = ucm_workspace + start;
  ws_top = start + nbytes;
  if (ws_top > ws_peak) ws_peak = ws_top;
  return ucm_workspace + start;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr) {
  (void)device_type; (void)device_id;
  if (ws_depth == 0 || ws_block[ws_depth - 1] != ptr) {
    ucm_set_error("workspace freed out of order: the kernels must free in reverse allocation order");
    return -1;
  }
  ws_top = ws_saved_top[--ws_depth];
  return 0;
}

int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void *cdata, int num_task) {
  (void)num_task;
  TVMParallelGroupEnv env = {NULL, 1};
  return flambda(0, &env, cdata);  /* one task does all the work: no threads on the board */
}

int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv *penv) {
  (void)task_id; (void)penv;
  return 0;
}

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts, int32_t num_parts) {
  size_t n = (size_t)snprintf(last_error, sizeof last_error, "%s: ", kind);
  for (int32_t i = 0; i < num_parts && n < sizeof last_error; ++i) {
    n += (size_t)snprintf(last_error + n, sizeof last_error - n, "%s", message_parts[i]);
  }
}

/* Kernels built by TVM's LLVM call the backend through these function pointers, which TVM's runtime
 * would fill in when loading the library; kernels built as C source call the functions directly. */
extern void *__TVMBackendAllocWorkspace __attribute__((weak));
extern void *__TVMBackendFreeWorkspace __attribute__((weak));
extern void *__TVMBackendParallelLaunch __attribute__((weak));
extern void *__TVMBackendParallelBarrier __attribute__((weak));
extern void *__TVMFFIErrorSetRaisedFromCStrParts __attribute__((weak));

void ucm_shim_init(void) {
  if (&__TVMBackendAllocWorkspace) __TVMBackendAllocWorkspace = (void *)&TVMBackendAllocWorkspace;
  if (&__TVMBackendFreeWorkspace) __TVMBackendFreeWorkspace = (void *)&TVMBackendFreeWorkspace;
  if (&__TVMBackendParallelLaunch) __TVMBackendParallelLaunch = (void *)&TVMBackendParallelLaunch;
  if (&__TVMBackendParallelBarrier) __TVMBackendParallelBarrier = (void *)&TVMBackendParallelBarrier;
  if (&__TVMFFIErrorSetRaisedFromCStrParts)
    __TVMFFIErrorSetRaisedFromCStrParts = (void *)&TVMFFIErrorSetRaisedFromCStrParts;
}
