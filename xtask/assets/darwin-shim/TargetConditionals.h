/* Stub for compile-only checks of the macOS target (cargo xtask test): lets ring's C build
   without an Apple SDK. Nothing built with it is linked or run. */
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_TV 0
#define TARGET_OS_SIMULATOR 0
