/* Between the generated executor and the runtime shim (not part of the public API). */
#ifndef UCM_SHIM_H_
#define UCM_SHIM_H_

void ucm_shim_init(void);
void ucm_set_error(const char *message);

#endif /* UCM_SHIM_H_ */
