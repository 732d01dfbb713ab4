//! The unikernel image: initialisation order and the hand-over to the
//! executor that runs the network stack and services.
#![no_std]
#![no_main]

extern crate alloc;

mod devices;
mod exit;
mod interrupts;
mod logger;
mod memory;
mod paging;
mod platform;
mod serial;
mod time;

use alloc::rc::Rc;
use core::cell::RefCell;

use boot::command_line::{Barriers, LogLevel, Options};
use boot::BootInfo;
use log::{error, info, LevelFilter};
use net::executor::{yield_now, Executor};
use net::nic::NicDevice;
use net::services::echo;
use net::stack::{Stack, StackConfig};
use net::timer::Timers;
use smoltcp::time::Instant;
use virtio::barrier::BarrierMode;
use virtio_net::NetOptions;

use crate::exit::{exit_with, ExitCode};

/// Entered from the boot crate once the CPU is in long mode.
#[no_mangle]
pub fn kernel_main(boot_info: &'static BootInfo) -> ! {
    serial::init();
    let (tsc_hz, tsc_source) = time::init(boot_info.entry_tsc);

    let options = match Options::parse(boot_info.command_line()) {
        Ok(options) => options,
        Err(error) => {
            println!("boot: invalid command line: {error}");
            exit_with(ExitCode::InvalidCommandLine);
        }
    };
    logger::init(level_filter(options.log_level));
    info!("command line: '{}'", boot_info.command_line());
    info!("TSC {} MHz ({:?})", tsc_hz / 1_000_000, tsc_source);

    interrupts::init();

    for region in boot_info.memory_regions() {
        info!(
            "memory {:#012x}-{:#012x} type {}",
            region.start,
            region.end(),
            region.kind
        );
    }
    match memory::init(boot_info) {
        Ok(heap) => info!("heap {:#x} size {} KiB", heap.start, heap.size_bytes / 1024),
        Err(problem) => {
            error!("memory setup failed: {problem:?}");
            exit_with(ExitCode::BootFailure);
        }
    }

    let ecam = platform::find_ecam(boot_info.rsdp_address);
    match ecam {
        Some(window) => {
            info!("ECAM {:#x} buses {}-{}", window.base_address, window.start_bus, window.end_bus);
            if let Err(problem) = paging::map_device_memory(window.base_address, window.length_bytes()) {
                error!("cannot map ECAM at {:#x}: {problem:?}", window.base_address);
                exit_with(ExitCode::BootFailure);
            }
        }
        None => info!("no MCFG table: PCI configuration through port I/O"),
    }

    let functions = devices::enumerate_pci(ecam, low_ram_end(boot_info));
    let net_options = NetOptions {
        barrier_mode: match options.barriers {
            Barriers::Weak => BarrierMode::Weak,
            Barriers::Strong => BarrierMode::Strong,
        },
        event_idx: true,
    };
    let Some(nic) = devices::start_nic(&functions, ecam, net_options) else {
        error!("no usable NIC found: the kernel needs a virtio-net device (-device virtio-net-pci)");
        exit_with(ExitCode::NoUsableNic);
    };

    let mut device = NicDevice::new(nic);
    let stack = Stack::new(
        StackConfig {
            mac_address: device.nic().mac_address(),
            address: options.address,
            prefix_length: options.prefix_length,
            gateway: Some(options.gateway),
            random_seed: time::rdtsc(),
        },
        &mut device,
        clock,
    );
    info!("interface {}/{} gateway {}", options.address, options.prefix_length, options.gateway);
    let device = Rc::new(RefCell::new(device));

    let mut executor = Executor::new();
    let spawner = executor.spawner();
    let timers = Timers::new(clock);
    spawner.spawn_named("interface", {
        let (stack, device, timers) = (stack.clone(), device.clone(), timers.clone());
        async move {
            loop {
                stack.poll(&mut *device.borrow_mut());
                timers.fire(clock());
                yield_now().await;
            }
        }
    });
    spawner.spawn_named("echo-tcp", {
        let (stack, spawner) = (stack.clone(), spawner.clone());
        async move {
            if let Err(problem) = echo::serve_tcp(stack, spawner, echo::ECHO_PORT).await {
                error!("TCP echo stopped: {problem:?}");
            }
        }
    });
    spawner.spawn_named("echo-udp", {
        let stack = stack.clone();
        async move {
            if let Err(problem) = echo::serve_udp(stack, echo::ECHO_PORT).await {
                error!("UDP echo stopped: {problem:?}");
            }
        }
    });
    // One pass binds the services' sockets before the line below says so.
    executor.run_once();
    info!(
        "echo listening on TCP and UDP port {} (boot took {} us)",
        echo::ECHO_PORT,
        time::uptime_micros()
    );

    executor.run(|_| core::hint::spin_loop())
}

/// Returns smoltcp's time: microseconds since the PVH entry.
fn clock() -> Instant {
    Instant::from_micros(time::uptime_micros() as i64)
}

/// Returns the end of usable RAM below 4 GiB, above which PCI windows lie.
fn low_ram_end(boot_info: &BootInfo) -> u64 {
    boot_info
        .memory_regions()
        .iter()
        .filter(|region| region.is_usable() && region.start < 0x1_0000_0000)
        .map(|region| region.end().min(0x1_0000_0000))
        .max()
        .unwrap_or(0)
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

#[panic_handler]
fn panic(panic_info: &core::panic::PanicInfo) -> ! {
    serial::write_fmt_in_panic(format_args!("\nKERNEL PANIC: {panic_info}\n"));
    exit_with(ExitCode::Panic)
}
