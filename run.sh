#!/usr/bin/env bash
# Build, boot, test and benchmark the unikernel. `./run.sh --help` lists
# every command and option.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

target=x86_64-unknown-none
qboot_rom=/usr/share/qemu/qboot.rom

usage() {
    cat <<'EOF'
Usage:
  ./run.sh [OPTIONS] [-- QEMU_ARGS...]   build the kernel and boot it in QEMU
  ./run.sh test [CARGO_TEST_ARGS...]     run every test (host unit tests and QEMU tests)
  ./run.sh build                         build the kernel image only
  ./run.sh install                       install QEMU, netperf and the Rust target
  ./run.sh bench [run] [OPTIONS]         weak vs strong barriers end to end with netperf
                                         (./run.sh bench run --help)
  ./run.sh bench ring [OPTIONS]          two-core virtqueue ping-pong on the host, weak vs
                                         strong barriers (./run.sh bench ring --help)

Boot options (defaults in brackets):
  --append 'KEY=VALUE ...'  kernel command line: ip=ADDR/PREFIX, gw=ADDR,
                            log=off|error|warn|info|debug|trace,
                            barriers=weak|strong, mode=irq|poll,
                            netperf_data_ports=FIRST-LAST,
                            barrier_bench=on|off|N  [empty]
  --accel kvm|tcg           accelerator [kvm when the host has hardware
                            virtualisation, else tcg]
  --machine q35|pc          QEMU machine type [q35]
  --firmware qboot|seabios  firmware [qboot when installed, else seabios]
  --memory SIZE             guest memory, as QEMU's -m takes it [256M]
  --echo-port PORT          host port on 127.0.0.1 forwarded to the guest's
                            echo service, TCP and UDP port 7 [5007]
  --discard-port PORT       host port forwarded to discard, TCP and UDP 9 [5009]
  --chargen-port PORT       host port forwarded to chargen, TCP 19 [5019]
  --netperf-port PORT       host port forwarded to the netperf control
                            port, TCP 12865 [12865]
  --data-ports FIRST-LAST   netperf data ports, forwarded TCP and UDP with the
                            same numbers on host and guest, and passed to the
                            kernel as netperf_data_ports [12866-12869]
  --nic-options OPTS        extra properties for -device virtio-net-pci,
                            for example 'event_idx=off' [none]
  --no-nic                  boot without a network device
  --serial socket:PATH      put the console on a Unix socket server at PATH
                            (connect with: socat - UNIX-CONNECT:PATH); the
                            output is still copied to this terminal [stdio]
  --serial-log FILE         with --serial socket:PATH, copy the output to FILE
                            instead of this terminal
  --gdb PORT                start QEMU halted with a gdb stub on
                            127.0.0.1:PORT and print the gdb command line
  --debug                   build and boot the debug profile [release]
  --no-build                boot the image already built
  -h, --help                show this help

Everything after `--` goes to QEMU unchanged. The guest's serial console is
this terminal (type after the first "> " prompt; QEMU keeps running when
piped input ends, until the console's exit command or Ctrl-C); ./run.sh exits with the status the kernel gives (0 on a clean
exit, 64 bad command line, 69 no usable NIC, 70 boot failure, 101 panic),
or 2 when run.sh or QEMU itself fails.
EOF
}

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

# Installs a Debian package when a command is missing and we are root.
# Otherwise prints exactly what to install.
ensure_command() {
    local command=$1 package=$2
    command -v "$command" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing $package (provides $command)"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null
        command -v "$command" >/dev/null 2>&1 && return 0
    fi
    die "$command not found: install the Debian package $package (apt-get install $package)"
}

ensure_toolchain() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust with rustup (https://rustup.rs)"
    # rust-toolchain.toml names the target; rustup installs it on first use,
    # but an older rustup does not, so ask for it explicitly.
    if command -v rustup >/dev/null 2>&1 &&
        ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        rustup target add "$target" >/dev/null
    fi
}

# Prints the kernel image path for a profile ("release" or "debug").
kernel_image() {
    echo "$here/target/$target/$1/kernel"
}

build_kernel() {
    local profile=$1
    ensure_toolchain
    local flags=(--target "$target" -p kernel)
    [ "$profile" = release ] && flags+=(--release)
    cargo build "${flags[@]}" >&2
}

# Sets `accel` and `accel_reason`: KVM only when /dev/kvm is usable hardware
# virtualisation. kvm_pvm (a paravirtual KVM) emulates kernel-mode guest code
# and is far slower than TCG, so it counts as no KVM.
choose_accel() {
    accel=tcg
    if [ -d /sys/module/kvm_pvm ]; then
        accel_reason="/dev/kvm is kvm_pvm (paravirtual, emulates kernel-mode code, slower than TCG)"
    elif [ ! -e /dev/kvm ]; then
        accel_reason="/dev/kvm does not exist"
    elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        accel_reason="/dev/kvm is not readable and writable by this user"
    else
        accel=kvm
        accel_reason="/dev/kvm offers hardware virtualisation"
    fi
}

# Prints a CPU model for KVM: plain `-cpu host` aborts on hosts that do not
# expose arch-capabilities, so start it paused for a second to see.
kvm_cpu_model() {
    qemu-system-x86_64 -accel kvm -cpu host -M q35 -nodefaults -no-user-config \
        -display none -monitor none -serial none -S </dev/null >/dev/null 2>&1 &
    local probe=$!
    sleep 1
    if kill -0 "$probe" 2>/dev/null; then
        kill "$probe" 2>/dev/null || true
        wait "$probe" 2>/dev/null || true
        echo host
    else
        wait "$probe" 2>/dev/null || true
        echo host,-arch-capabilities
    fi
}

boot() {
    local append="" accel="" machine=q35 firmware="" memory=256M echo_port=5007
    local discard_port=5009 chargen_port=5019 netperf_port=12865 data_ports=12866-12869
    local nic_options="" nic=yes profile=release build=yes serial=stdio serial_log="" gdb_port=""
    local qemu_extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --append) append=${2?--append needs a value}; shift 2 ;;
            --accel) accel=${2?--accel needs kvm or tcg}; shift 2 ;;
            --machine) machine=${2?--machine needs q35 or pc}; shift 2 ;;
            --firmware) firmware=${2?--firmware needs qboot or seabios}; shift 2 ;;
            --memory) memory=${2?--memory needs a size}; shift 2 ;;
            --echo-port) echo_port=${2?--echo-port needs a port}; shift 2 ;;
            --discard-port) discard_port=${2?--discard-port needs a port}; shift 2 ;;
            --chargen-port) chargen_port=${2?--chargen-port needs a port}; shift 2 ;;
            --netperf-port) netperf_port=${2?--netperf-port needs a port}; shift 2 ;;
            --data-ports) data_ports=${2?--data-ports needs FIRST-LAST}; shift 2 ;;
            --nic-options) nic_options=${2?--nic-options needs a value}; shift 2 ;;
            --no-nic) nic=no; shift ;;
            --serial) serial=${2?--serial needs socket:PATH}; shift 2 ;;
            --serial-log) serial_log=${2?--serial-log needs a file}; shift 2 ;;
            --gdb) gdb_port=${2?--gdb needs a port}; shift 2 ;;
            --debug) profile=debug; shift ;;
            --no-build) build=no; shift ;;
            -h|--help) usage; exit 0 ;;
            --) shift; qemu_extra=("$@"); break ;;
            *) usage >&2; die "unknown option '$1'" ;;
        esac
    done

    case "$machine" in q35|pc) ;; *) die "invalid --machine '$machine': expected q35 or pc" ;; esac
    local name value
    for name in echo_port discard_port chargen_port netperf_port; do
        value=${!name}
        case "$value" in
            ''|*[!0-9]*) die "invalid --${name//_/-} '$value': expected a port number" ;;
        esac
    done
    case "$data_ports" in
        *-*) ;;
        *) die "invalid --data-ports '$data_ports': expected FIRST-LAST, such as 12866-12869" ;;
    esac
    local first_data_port=${data_ports%-*} last_data_port=${data_ports#*-}
    case "$first_data_port$last_data_port" in
        ''|*[!0-9]*) die "invalid --data-ports '$data_ports': expected FIRST-LAST" ;;
    esac
    [ "$first_data_port" -le "$last_data_port" ] ||
        die "invalid --data-ports '$data_ports': FIRST is above LAST"

    ensure_command qemu-system-x86_64 qemu-system-x86
    [ "$build" = yes ] && build_kernel "$profile"
    local image
    image=$(kernel_image "$profile")
    [ -f "$image" ] || die "kernel image $image not found: run ./run.sh build first"

    local cpu
    if [ -z "$accel" ]; then
        choose_accel
        log "accelerator $accel: $accel_reason"
    else
        log "accelerator $accel (from --accel)"
    fi
    # Under TCG with a single vCPU, QEMU translates the guest's fences and
    # locked instructions without host barriers, while virtio devices run in
    # other host threads. A store then a load (publish the avail index, read
    # the event index) can then pass each other, and a notification is lost.
    # A second vCPU, which the kernel leaves parked, makes QEMU translate
    # them with real host barriers and atomics.
    local smp=1
    case "$accel" in
        kvm) cpu=$(kvm_cpu_model) ;;
        tcg) cpu=max; smp=2 ;;
        *) die "invalid --accel '$accel': expected kvm or tcg" ;;
    esac

    local firmware_args=()
    case "${firmware:-auto}" in
        auto) [ -f "$qboot_rom" ] && firmware_args=(-bios "$qboot_rom") ;;
        qboot)
            [ -f "$qboot_rom" ] || die "qboot not found at $qboot_rom (it ships with qemu-system-x86)"
            firmware_args=(-bios "$qboot_rom") ;;
        seabios) ;;
        *) die "invalid --firmware '$firmware': expected qboot or seabios" ;;
    esac

    local nic_args=()
    if [ "$nic" = yes ]; then
        local forwards="hostfwd=tcp:127.0.0.1:$echo_port-:7,hostfwd=udp:127.0.0.1:$echo_port-:7"
        forwards+=",hostfwd=tcp:127.0.0.1:$discard_port-:9,hostfwd=udp:127.0.0.1:$discard_port-:9"
        forwards+=",hostfwd=tcp:127.0.0.1:$chargen_port-:19"
        forwards+=",hostfwd=tcp:127.0.0.1:$netperf_port-:12865"
        local port
        for ((port = first_data_port; port <= last_data_port; port++)); do
            forwards+=",hostfwd=tcp:127.0.0.1:$port-:$port,hostfwd=udp:127.0.0.1:$port-:$port"
        done
        nic_args=(-netdev "user,id=net0,$forwards"
            -device "virtio-net-pci,netdev=net0${nic_options:+,$nic_options}")
    fi

    # The guest binds the data ports on its command line, which must match
    # the forwards.
    if [ "$data_ports" != 12866-12869 ]; then
        append="netperf_data_ports=$data_ports${append:+ $append}"
    fi

    local serial_args=(-serial stdio)
    case "$serial" in
        stdio) ;;
        socket:?*)
            local socket_path=${serial#socket:}
            # QEMU copies everything the guest prints to the log file, so the
            # console output still reaches this terminal (or the named file).
            local log_target=${serial_log:-/dev/stdout}
            serial_args=(-chardev "socket,id=console,path=$socket_path,server=on,wait=off,logfile=$log_target"
                -serial chardev:console)
            ;;
        *) die "invalid --serial '$serial': expected socket:PATH" ;;
    esac

    local gdb_args=()
    if [ -n "$gdb_port" ]; then
        case "$gdb_port" in ''|*[!0-9]*) die "invalid --gdb '$gdb_port': expected a port number" ;; esac
        gdb_args=(-gdb "tcp:127.0.0.1:$gdb_port" -S)
        log "QEMU waits for gdb; in another terminal run:"
        log "  gdb $image -ex 'target remote 127.0.0.1:$gdb_port' -ex 'hbreak kernel_main' -ex continue"
    fi

    local command=(qemu-system-x86_64 -M "$machine" -accel "$accel" -cpu "$cpu" -smp "$smp"
        -m "$memory" -nodefaults -no-user-config -no-reboot
        -display none -monitor none "${serial_args[@]}" "${gdb_args[@]}"
        "${firmware_args[@]}"
        -kernel "$image" -append "$append"
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
        "${nic_args[@]}" "${qemu_extra[@]}")
    # %q quotes each argument, so the logged command can be pasted into a shell.
    log "$(printf '%q ' "${command[@]}")"

    # QEMU runs as a child so that its status can be mapped back and so that
    # ending this script (by PID) also ends QEMU.
    # Without job control a background command's stdin would be /dev/null;
    # the explicit redirection keeps the terminal (the guest console) on it.
    "${command[@]}" <&0 &
    local qemu=$!
    trap 'kill "$qemu" 2>/dev/null || true' INT TERM HUP EXIT
    local status=0
    wait "$qemu" || status=$?
    trap - INT TERM HUP EXIT
    # isa-debug-exit makes QEMU exit with (value << 1) | 1. The kernel writes
    # its code as the value, except code 0, which it writes as 0x7f (status
    # 255), because status 1 is also how QEMU reports its own errors.
    case "$status" in
        255) exit 0 ;;
        1) die "QEMU failed (exit status 1) before the kernel ended it; see its message above" ;;
    esac
    if [ $((status % 2)) -eq 1 ] && [ "$status" -lt 256 ]; then
        exit $(((status - 1) / 2))
    fi
    exit "$status"
}

# Installs Debian's netperf, which is in the non-free component: a sources
# file of our own, copied from debian.sources with only the Components line
# changed, enables it. debian.sources itself is never edited.
ensure_netperf() {
    command -v netperf >/dev/null 2>&1 && return 0
    local debian_sources=/etc/apt/sources.list.d/debian.sources
    local non_free_sources=/etc/apt/sources.list.d/non-free.sources
    if [ "$(id -u)" -eq 0 ] && [ -f "$debian_sources" ] && [ ! -f "$non_free_sources" ]; then
        log "enabling Debian's non-free component in $non_free_sources for netperf"
        sed 's/^Components:.*/Components: non-free/' "$debian_sources" >"$non_free_sources"
    fi
    ensure_command netperf netperf
}

run_tests() {
    ensure_toolchain
    ensure_command qemu-system-x86_64 qemu-system-x86
    ensure_netperf
    build_kernel release
    export KERNEL_IMAGE
    KERNEL_IMAGE=$(kernel_image release)
    cargo test --workspace --exclude kernel "$@"
    # The barrier ablation (a site set to no barrier at all) exists only in
    # builds with the `ablation` feature, which the kernel never enables.
    cargo test -p virtio -p bench --features bench/ablation "$@"
}

run_bench() {
    ensure_toolchain
    case "${1:-}" in
        ring)
            shift
            local features=()
            for argument in "$@"; do
                [ "$argument" = --unsafe-ablation ] && features=(--features ablation)
            done
            cargo run --release -p bench "${features[@]}" -- ring "$@"
            ;;
        run) shift; run_e2e_bench "$@" ;;
        *) run_e2e_bench "$@" ;;
    esac
}

# netperf is not installed here on purpose: the harness reports a missing
# netperf itself and names ./run.sh install.
run_e2e_bench() {
    ensure_command qemu-system-x86_64 qemu-system-x86
    build_kernel release
    cargo run --release -p bench -- run "$@"
}

case "${1:-}" in
    test) shift; run_tests "$@" ;;
    bench) shift; run_bench "$@" ;;
    install) shift; ensure_toolchain; ensure_command qemu-system-x86_64 qemu-system-x86; ensure_netperf ;;
    build) shift; build_kernel release; kernel_image release ;;
    -h|--help|help) usage ;;
    *) boot "$@" ;;
esac
