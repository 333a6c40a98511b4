/* The 64-bit integer <-> float conversions TVM's LLVM kernels call by their compiler-rt names
 * (__floatdidf, __fixsfdi, ...) and with the hard-float calling convention (values in s0 / d0). GCC's
 * libgcc defines those names as aliases of the __aeabi_* helpers, which use the base calling convention
 * (values in r0 / r1): linked directly, every such conversion in a kernel would read or return garbage.
 * The Makefile links the kernels with --wrap for these names, so their calls land here, where GCC calls
 * the __aeabi_* helper the right way. */
#include <stdint.h>

double __wrap___floatdidf(int64_t x) { return (double)x; }
float __wrap___floatdisf(int64_t x) { return (float)x; }
double __wrap___floatundidf(uint64_t x) { return (double)x; }
float __wrap___floatundisf(uint64_t x) { return (float)x; }
int64_t __wrap___fixdfdi(double x) { return (int64_t)x; }
int64_t __wrap___fixsfdi(float x) { return (int64_t)x; }
uint64_t __wrap___fixunsdfdi(double x) { return (uint64_t)x; }
uint64_t __wrap___fixunssfdi(float x) { return (uint64_t)x; }
