/* Stub for compile-only checks of the macOS target (cargo xtask test): lets ring's C build
   without an Apple SDK. Nothing built with it is linked or run. */
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void *memmove(void *, const void *, size_t);
void *memset(void *, int, size_t);
int memcmp(const void *, const void *, size_t);
size_t strlen(const char *);
