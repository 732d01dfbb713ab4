//! The running kernel: the network stack, the services and the interface
//! task on the executor, in interrupt or poll mode.
//!
//! In interrupt mode the interface task suppresses queue interrupts while
//! it polls smoltcp and re-enables them with a recheck of the used rings.
//! It then sleeps until a NIC interrupt, a socket operation or smoltcp's
//! next deadline wakes it, and an idle CPU halts with the timer armed. In poll mode
//! the task polls on every pass of the executor and the CPU never halts.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use core::task::Poll;

use boot::command_line::{Options, WaitMode};
use log::{error, info};
use net::executor::{yield_now, Executor, Spawner};
use net::nic::NicDevice;
use net::services::discard::{self, DiscardCounters};
use net::services::netserver::{self, CpuCounters, NetserverConfig, SharedNetserverStats};
use net::services::{chargen, echo};
use net::stack::{Stack, StackConfig};
use net::timer::Timers;
use pci::Function;
use smoltcp::time::Instant;
use virtio::dma::IdentityDma;
use virtio::transport::MmioRegion;

use crate::console::{self, ConsoleContext};
use crate::devices::Nic;
use crate::platform::InterruptControllers;
use crate::{idle, nic_irq, time};

/// The interface's device type.
pub type Device = NicDevice<MmioRegion, IdentityDma>;

const MODE_INTERRUPT: u8 = 0;
const MODE_POLL: u8 = 1;
/// The current wait mode; the console may switch it at run time.
static MODE: AtomicU8 = AtomicU8::new(MODE_INTERRUPT);
/// Wake-ups of the interface task by a NIC interrupt that found no used
/// buffer in either queue.
pub static SPURIOUS_NIC_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Returns the current wait mode.
pub fn mode() -> WaitMode {
    match MODE.load(Ordering::Relaxed) {
        MODE_POLL => WaitMode::Poll,
        _ => WaitMode::Interrupt,
    }
}

/// Switches the wait mode from the next pass of the interface task. The
/// task is woken here because in poll mode the CPU no longer halts, so a
/// task asleep until the next NIC interrupt would never wake.
pub fn set_mode(mode: WaitMode) {
    let value = match mode {
        WaitMode::Interrupt => MODE_INTERRUPT,
        WaitMode::Poll => MODE_POLL,
    };
    MODE.store(value, Ordering::Relaxed);
    nic_irq::NIC_WAKER.wake();
}

/// Returns smoltcp's time: microseconds since the PVH entry.
pub fn clock() -> Instant {
    Instant::from_micros(time::uptime_micros() as i64)
}

/// Starts the stack and services on `nic` and runs the executor forever.
pub fn run(nic: Nic, options: &Options, functions: Vec<Function>, controllers: &InterruptControllers) -> ! {
    set_mode(options.mode);
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
    let timers = Timers::new(clock);

    let mut executor = Executor::new();
    let spawner = executor.spawner();
    spawner.spawn_named("interface", drive_interface(stack.clone(), device.clone(), timers.clone()));
    let services = spawn_services(&spawner, &stack, &timers, options);
    console::init(controllers);
    let console_context = ConsoleContext {
        device: device.clone(),
        stack: stack.clone(),
        functions,
        address: options.address,
        prefix_length: options.prefix_length,
        gateway: options.gateway,
        services,
    };

    // One pass binds the services' sockets before the line below reports them.
    executor.run_once();
    info!(
        "echo listening on TCP and UDP port {} (boot took {} us), mode {:?}; netperf on TCP {}, data ports {}-{}",
        echo::ECHO_PORT,
        time::uptime_micros(),
        mode(),
        netserver::NETSERVER_PORT,
        options.netperf_data_ports.0,
        options.netperf_data_ports.1,
    );

    spawner.spawn_named("console", console::run(console_context, timers.clone()));
    executor.run(|executor| idle(executor, &timers))
}

/// Counters of the services, for the console.
#[derive(Clone)]
pub struct ServiceCounters {
    pub netserver: SharedNetserverStats,
    pub discard: DiscardCounters,
}

/// Reads halted and total TSC ticks for the netperf service's CPU report.
fn cpu_counters() -> CpuCounters {
    let ticks = idle::cpu_ticks();
    CpuCounters { busy_ticks: ticks.total.saturating_sub(ticks.halted), total_ticks: ticks.total }
}

fn spawn_services(spawner: &Spawner, stack: &Stack, timers: &Timers, options: &Options) -> ServiceCounters {
    let counters = ServiceCounters {
        netserver: SharedNetserverStats::default(),
        discard: DiscardCounters::default(),
    };
    let config = NetserverConfig {
        control_port: netserver::NETSERVER_PORT,
        data_ports: options.netperf_data_ports,
        cpu: Some(cpu_counters),
        stats: counters.netserver.clone(),
    };
    spawner.spawn_named("netserver", {
        let (stack, spawner, timers) = (stack.clone(), spawner.clone(), timers.clone());
        async move {
            if let Err(problem) = netserver::serve(stack, spawner, timers, config).await {
                error!("netperf service stopped: {problem:?}");
            }
        }
    });
    spawner.spawn_named("discard-tcp", {
        let (stack, spawner, discard) = (stack.clone(), spawner.clone(), counters.discard.clone());
        async move {
            if let Err(problem) = discard::serve_tcp(stack, spawner, discard::DISCARD_PORT, discard).await {
                error!("TCP discard stopped: {problem:?}");
            }
        }
    });
    spawner.spawn_named("discard-udp", {
        let (stack, discard) = (stack.clone(), counters.discard.clone());
        async move {
            if let Err(problem) = discard::serve_udp(stack, discard::DISCARD_PORT, discard).await {
                error!("UDP discard stopped: {problem:?}");
            }
        }
    });
    spawner.spawn_named("chargen-tcp", {
        let (stack, spawner) = (stack.clone(), spawner.clone());
        async move {
            if let Err(problem) = chargen::serve_tcp(stack, spawner, chargen::CHARGEN_PORT).await {
                error!("TCP chargen stopped: {problem:?}");
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
    counters
}

/// Called by the executor after a pass in which no task was woken.
fn idle(executor: &Executor, timers: &Timers) {
    timers.fire(clock());
    if mode() == WaitMode::Poll || executor.has_woken_tasks() {
        return;
    }
    let deadline = timers
        .next_deadline()
        .map(|deadline| time::micros_to_tsc(deadline.total_micros().max(0) as u64));
    idle::halt(deadline);
    timers.fire(clock());
}

/// Moves frames between the NIC and smoltcp for as long as the kernel runs.
async fn drive_interface(stack: Stack, device: Rc<RefCell<Device>>, timers: Timers) {
    // The queues start with used-buffer notifications enabled.
    let mut ring_interrupts_enabled = true;
    loop {
        let interrupted = nic_irq::NIC_INTERRUPTED.swap(false, Ordering::Acquire);
        {
            let mut device = device.borrow_mut();
            if interrupted && !device.nic().has_used_buffers() {
                SPURIOUS_NIC_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            }
            if ring_interrupts_enabled {
                device.nic_mut().disable_interrupts();
                ring_interrupts_enabled = false;
            }
            stack.poll(&mut *device);
        }
        // In poll mode the executor is never idle, so the idle hook cannot
        // be the only place where timers fire.
        timers.fire(clock());

        if mode() == WaitMode::Poll {
            yield_now().await;
            continue;
        }

        // Re-enabling rechecks the used rings after the full barrier: a
        // buffer that arrived since the poll means another pass, not a sleep.
        ring_interrupts_enabled = true;
        device.borrow_mut().nic_mut().reclaim_transmitted();
        if device.borrow_mut().nic_mut().enable_interrupts() {
            yield_now().await;
            continue;
        }
        let deadline = stack.poll_delay().map(|delay| clock() + delay);
        let mut registered = false;
        let woken = poll_fn(|context| {
            if registered {
                return Poll::Ready(());
            }
            nic_irq::NIC_WAKER.register(context.waker());
            stack.register_interface_waker(context.waker());
            registered = true;
            Poll::Pending
        });
        match deadline {
            Some(deadline) => {
                let _ = timers.timeout(deadline, woken).await;
            }
            None => woken.await,
        }
    }
}
