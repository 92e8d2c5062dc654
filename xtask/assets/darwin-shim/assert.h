/* Stub for compile-only checks of the macOS target (cargo xtask test): lets ring's C build
   without an Apple SDK. Nothing built with it is linked or run. */
#define assert(x) ((void)0)
