/* UCM-Net skin-lesion segmentation, compiled by ucm-edge: one function, static memory, no runtime library. */
#ifndef UCM_MODEL_H_
#define UCM_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UCM_OK 0
#define UCM_ERR_ARGUMENT (-1) /* a NULL pointer */
#define UCM_ERR_KERNEL (-2)   /* a kernel failed; ucm_last_error() says which and why */

/* Segment one image. rgb: height x width x 3 bytes, row-major (HWC), R G B. mask: height x width bytes,
 * 255 for lesion, 0 for skin. Returns UCM_OK or a negative code with a message in ucm_last_error().
 * The last kernel computes the mask directly: ucm_run never stores the float logits. */
int ucm_run(const uint8_t *rgb_hwc, uint8_t *mask);

/* Where an int8 model keeps its input image (height x width x 3 bytes, HWC), inside its arena; NULL for a
 * float model. Write the pixels here (camera DMA, file read) and pass this pointer as rgb_hwc to ucm_run:
 * no copy is made and no image buffer of your own is needed; the RAM the bundle reports ("io") counts only
 * the mask. Like the input tensor of TensorFlow Lite Micro, this memory is reused once the first layers
 * have read it: the image is gone after ucm_run returns, so write it again before each call. A caller that
 * passes its own buffer instead gets it copied in (and holds height x width x 3 bytes more). */
uint8_t *ucm_input(void);

/* As ucm_run, and also copies the raw float32 logits (height x width, before the sigmoid) when logits
 * is not NULL (computed by the last kernel in place of the mask, in the arena, then copied). */
int ucm_run_logits(const uint8_t *rgb_hwc, uint8_t *mask, float *logits);

/* The image size the model was compiled for. */
int ucm_input_height(void);
int ucm_input_width(void);

/* The message of the last failure ("" if none). */
const char *ucm_last_error(void);

/* Largest workspace a kernel asked for so far (bytes). */
size_t ucm_workspace_peak(void);

#ifdef UCM_PROFILE
/* A build with -DUCM_PROFILE times every kernel call with ucm_clock(), which the program that links the
 * model provides (any monotonic tick counter: nanoseconds on Linux, SysTick ticks on a microcontroller),
 * and sums the ticks of each call over all runs. */
uint64_t ucm_clock(void);
int ucm_profile_calls(void);               /* kernel calls per run */
const char *ucm_profile_kernel(int call);  /* the kernel a call runs */
uint64_t ucm_profile_ticks(int call);      /* ucm_clock() ticks spent in it, summed over runs */
#endif

#ifdef __cplusplus
}
#endif

#endif /* UCM_MODEL_H_ */
