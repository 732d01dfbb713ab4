//! Console commands. Output is one record per line with `key=value`
//! fields where the values are counters, so that people and the benchmark
//! harness read the same text (the format is documented in the README).

use boot::command_line::WaitMode;
use log::LevelFilter;
use virtio::barrier::{BarrierKind, BarrierMode, BarrierSite};
use virtio::dma::IdentityDma;
use virtio::queue::SplitQueue;

use super::ConsoleContext;
use crate::{exit, idle, interrupts, memory, nic_irq, println, runtime, time};

struct Command {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    run: fn(&ConsoleContext, &[&str]) -> Result<(), &'static str>,
}

const COMMANDS: &[Command] = &[
    Command { name: "help", usage: "help", help: "list the commands", run: help },
    Command { name: "stats", usage: "stats", help: "counters of the queues, the NIC, interrupts, heap and CPU", run: stats },
    Command { name: "pci", usage: "pci", help: "PCI functions with BARs and capabilities", run: pci },
    Command { name: "virtio", usage: "virtio", help: "negotiated features, queue sizes, indices and event indices", run: virtio },
    Command { name: "net", usage: "net", help: "address, gateway, MAC, link and TCP sockets", run: net },
    Command { name: "barriers", usage: "barriers [weak|strong]", help: "show or switch the barrier mode of every virtqueue", run: barriers },
    Command { name: "mode", usage: "mode [irq|poll]", help: "show or switch interrupt or busy-poll mode", run: mode },
    Command { name: "log", usage: "log [off|error|warn|info|debug|trace]", help: "show or set the log level", run: log_level },
    Command { name: "barrier-bench", usage: "barrier-bench [ITERATIONS]", help: "time read, write and full barriers in each mode", run: barrier_bench_command },
    Command { name: "exit", usage: "exit [CODE]", help: "end QEMU; ./run.sh exits with CODE (default 0)", run: exit_command },
];

/// Runs one command line.
pub fn execute(context: &ConsoleContext, line: &str) {
    let words: alloc::vec::Vec<&str> = line.split_ascii_whitespace().collect();
    let Some((&name, arguments)) = words.split_first() else { return };
    match COMMANDS.iter().find(|command| command.name == name) {
        Some(command) => {
            if let Err(problem) = (command.run)(context, arguments) {
                println!("error: {problem}; usage: {}", command.usage);
            }
        }
        None => println!("error: unknown command '{name}'; type 'help' for the list"),
    }
}

fn help(_: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    no_arguments(arguments)?;
    for command in COMMANDS {
        println!("{:<40} {}", command.usage, command.help);
    }
    Ok(())
}

fn no_arguments(arguments: &[&str]) -> Result<(), &'static str> {
    if arguments.is_empty() { Ok(()) } else { Err("this command takes no arguments") }
}

fn mode_name(mode: BarrierMode) -> &'static str {
    match mode {
        BarrierMode::Weak => "weak",
        BarrierMode::Strong => "strong",
    }
}

fn print_queue(name: &str, queue: &SplitQueue<u16, IdentityDma>, interrupts: u64) {
    let counters = queue.counters();
    let barriers = queue.barrier_counters();
    println!(
        "queue index={} name={name} adds={} kicks={} kicks_suppressed={} interrupts={interrupts} used={} \
         queue_full={} used_idx_invalid={} used_id_invalid={} used_length_invalid={} broken={} barrier_mode={} barriers_read={} barriers_write={} barriers_full={}",
        queue.queue_index(),
        counters.adds,
        counters.kicks,
        counters.kicks_suppressed,
        counters.used_processed,
        counters.errors.queue_full,
        counters.errors.used_idx_invalid,
        counters.errors.used_id_invalid,
        counters.errors.used_length_invalid,
        if queue.is_broken() { "yes" } else { "no" },
        mode_name(queue.barrier_mode()),
        barriers.kind_total(BarrierKind::Read),
        barriers.kind_total(BarrierKind::Write),
        barriers.kind_total(BarrierKind::Full),
    );
    for site in BarrierSite::ALL {
        println!(
            "barrier queue={} site={} weak={} strong={}",
            queue.queue_index(),
            site.name(),
            barriers.count(site, BarrierMode::Weak),
            barriers.count(site, BarrierMode::Strong),
        );
    }
}

fn stats(context: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    no_arguments(arguments)?;
    print_nic_stats(context);
    print_service_stats(context);
    print_system_stats();
    Ok(())
}

fn print_nic_stats(context: &ConsoleContext) {
    let device = context.device.borrow();
    let nic = device.nic();
    let intx = interrupts::count(nic_irq::INTX_VECTOR);
    print_queue("receive", nic.receiver().queue(), interrupts::count(nic_irq::RECEIVE_VECTOR) + intx);
    print_queue("transmit", nic.transmitter().queue(), interrupts::count(nic_irq::TRANSMIT_VECTOR));
    for (queue, (submit, complete)) in [(0u16, nic.receiver().cycle_histograms()), (1, nic.transmitter().cycle_histograms())] {
        print_histograms(queue, "submit", submit);
        print_histograms(queue, "complete", complete);
    }

    let counters = nic.stats();
    println!(
        "nic rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} rx_dropped_short={} rx_dropped_too_long={} \
         tx_dropped_too_long={} tx_dropped_ring_full={} tx_dropped_queue_error={} rx_notifications={} \
         tx_notifications={}",
        counters.rx.frames,
        counters.rx.bytes,
        counters.tx.frames,
        counters.tx.bytes,
        counters.rx.dropped_short,
        counters.rx.dropped_too_long,
        counters.tx.dropped_too_long,
        counters.tx.dropped_ring_full,
        counters.tx.dropped_queue_error,
        counters.rx.notifications,
        counters.tx.notifications,
    );
    println!(
        "interrupts config={} intx={} intx_not_ours={} spurious={} timer={}",
        interrupts::count(nic_irq::CONFIG_VECTOR),
        intx,
        nic_irq::INTX_NOT_OURS.load(core::sync::atomic::Ordering::Relaxed),
        runtime::SPURIOUS_NIC_INTERRUPTS.load(core::sync::atomic::Ordering::Relaxed),
        interrupts::count(crate::apic::TIMER_VECTOR),
    );
}

fn print_service_stats(context: &ConsoleContext) {
    let netperf = context.services.netserver.snapshot();
    let mut tests = alloc::string::String::new();
    for kind in net::services::netserver::TEST_KINDS {
        let _ = core::fmt::Write::write_fmt(&mut tests, format_args!(" {}={}", kind.name(), netperf.started(kind)));
    }
    println!(
        "netserver control_connections={} tests_completed={} tests_aborted={} bytes_received={} bytes_sent={}{tests}",
        netperf.control_connections, netperf.tests_completed, netperf.tests_aborted, netperf.bytes_received, netperf.bytes_sent,
    );

    let mut errors = alloc::string::String::new();
    for reason in net::services::netserver::ErrorReason::ALL {
        let _ = core::fmt::Write::write_fmt(&mut errors, format_args!(" {}={}", reason.name(), netperf.error_count(reason)));
    }
    println!("netserver_errors{errors}");

    let discard = &context.services.discard;
    println!(
        "discard tcp_connections={} tcp_bytes={} udp_datagrams={} udp_bytes={}",
        discard.tcp_connections(),
        discard.tcp_bytes(),
        discard.udp_datagrams(),
        discard.udp_bytes(),
    );
}

fn print_system_stats() {
    let ticks = idle::cpu_ticks();
    let busy_permille = 1000 - (ticks.halted.saturating_mul(1000) / ticks.total.max(1)).min(1000);
    println!(
        "system uptime_us={} heap_used_bytes={} cpu_busy_permille={busy_permille} halts={} mode={}",
        time::uptime_micros(),
        memory::heap_used_bytes(),
        idle::halt_count(),
        match runtime::mode() {
            WaitMode::Interrupt => "irq",
            WaitMode::Poll => "poll",
        },
    );
}

fn barrier_bench_command(_: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    let iterations = match arguments {
        [] => crate::barrier_bench::DEFAULT_ITERATIONS,
        [count] => match count.parse::<u32>() {
            Ok(count) if count > 0 => count,
            _ => return Err("expected a positive number of iterations"),
        },
        _ => return Err("expected at most one number"),
    };
    crate::barrier_bench::run(iterations, crate::barrier_bench::accelerator());
    Ok(())
}

fn print_histograms(queue: u16, path: &str, histograms: &virtio_net::histogram::PathHistograms) {
    for mode in [BarrierMode::Weak, BarrierMode::Strong] {
        let histogram = histograms.for_mode(mode);
        let mut buckets = alloc::string::String::new();
        for (index, count) in histogram.buckets.iter().enumerate() {
            if index > 0 {
                buckets.push(',');
            }
            let _ = core::fmt::Write::write_fmt(&mut buckets, format_args!("{count}"));
        }
        println!(
            "cycles queue={queue} path={path} mode={} count={} mean={} log2_buckets={buckets}",
            mode_name(mode),
            histogram.count,
            histogram.mean_cycles(),
        );
    }
}

fn pci(context: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    no_arguments(arguments)?;
    for function in &context.functions {
        println!("{function}");
    }
    Ok(())
}

fn virtio(context: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    no_arguments(arguments)?;
    let device = context.device.borrow();
    let nic = device.nic();
    println!("features {}", nic.features());
    for (name, queue) in [("receive", nic.receiver().queue()), ("transmit", nic.transmitter().queue())] {
        println!(
            "queue index={} name={name} size={} event_idx={} avail_idx={} used_idx={} last_used_idx={} \
             used_event={} avail_event={} interrupts_enabled={} descriptors_in_use={}",
            queue.queue_index(),
            queue.size(),
            queue.event_idx(),
            queue.avail_idx(),
            queue.used_idx(),
            queue.last_used_idx(),
            queue.used_event(),
            queue.avail_event(),
            queue.interrupts_enabled(),
            queue.descriptors_in_use(),
        );
    }
    Ok(())
}

fn net(context: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    no_arguments(arguments)?;
    let (address, gateway) = (context.address, context.gateway);
    let device = context.device.borrow();
    let mac = device.nic().mac_address();
    println!(
        "interface address={address}/{} gateway={gateway} mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} link={}",
        context.prefix_length,
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
        match device.nic().link_up() {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        }
    );
    // Listening sockets are counted per port: the listeners keep a backlog
    // of them, and one line each would bury the connections.
    let mut listening: alloc::vec::Vec<(u16, usize)> = alloc::vec::Vec::new();
    context.stack.for_each_tcp_socket(|port, remote, state| match remote {
        Some(remote) => println!("tcp local_port={port} remote={remote} state={state}"),
        None if state == smoltcp::socket::tcp::State::Listen => {
            match listening.iter_mut().find(|(listening_port, _)| *listening_port == port) {
                Some((_, count)) => *count += 1,
                None => listening.push((port, 1)),
            }
        }
        None => println!("tcp local_port={port} state={state}"),
    });
    for (port, count) in listening {
        println!("tcp local_port={port} state=LISTEN sockets={count}");
    }
    Ok(())
}

fn barriers(context: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    match arguments {
        [] => {}
        ["weak"] | ["strong"] => {
            let mode = if arguments[0] == "weak" { BarrierMode::Weak } else { BarrierMode::Strong };
            // The console runs between passes of the interface task, so no
            // ring operation is under way while the mode changes.
            if !context.device.borrow_mut().nic_mut().set_barrier_mode(mode) {
                println!("warning: VIRTIO_F_ORDER_PLATFORM was negotiated, so the queues keep strong barriers");
            }
        }
        _ => return Err("expected weak or strong"),
    }
    let device = context.device.borrow();
    println!(
        "barriers receive={} transmit={}",
        mode_name(device.nic().receiver().queue().barrier_mode()),
        mode_name(device.nic().transmitter().queue().barrier_mode()),
    );
    Ok(())
}

fn mode(_: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    match arguments {
        [] => {}
        ["irq"] => runtime::set_mode(WaitMode::Interrupt),
        ["poll"] => runtime::set_mode(WaitMode::Poll),
        _ => return Err("expected irq or poll"),
    }
    println!(
        "mode {}",
        match runtime::mode() {
            WaitMode::Interrupt => "irq",
            WaitMode::Poll => "poll",
        }
    );
    Ok(())
}

fn log_level(_: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    match arguments {
        [] => {}
        [level] => {
            let filter = match *level {
                "off" => LevelFilter::Off,
                "error" => LevelFilter::Error,
                "warn" => LevelFilter::Warn,
                "info" => LevelFilter::Info,
                "debug" => LevelFilter::Debug,
                "trace" => LevelFilter::Trace,
                _ => return Err("expected off, error, warn, info, debug or trace"),
            };
            log::set_max_level(filter);
        }
        _ => return Err("expected one level"),
    }
    println!("log {}", log::max_level().as_str().to_ascii_lowercase());
    Ok(())
}

fn exit_command(_: &ConsoleContext, arguments: &[&str]) -> Result<(), &'static str> {
    let code = match arguments {
        [] => 0,
        [code] => match code.parse::<u8>() {
            Ok(code) if code <= exit::MAX_EXIT_CODE => code,
            _ => return Err("expected an exit code from 0 to 126"),
        },
        _ => return Err("expected at most one exit code"),
    };
    println!("exit {code}");
    exit::exit(code)
}
