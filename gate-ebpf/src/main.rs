#![no_std]
#![no_main]
//! placeholder
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
