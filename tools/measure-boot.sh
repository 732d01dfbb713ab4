#!/usr/bin/env bash
# Measures boot figures of the kernel under the accelerator run.sh picks:
# the kernel's own time from the PVH entry to "echo listening" (TSC), and
# the wall time from starting run.sh (QEMU) to the first echoed byte, with
# each firmware. Prints one line per boot.
#
# usage: tools/measure-boot.sh [BOOTS] [FIRMWARE...]   (defaults: 5 qboot seabios)
set -euo pipefail
cd "$(dirname "$0")/.."

boots=${1:-5}
shift || true
firmwares=("${@:-qboot}")
[ $# -eq 0 ] && firmwares=(qboot seabios)

./run.sh build >/dev/null

# Picks a free TCP port on 127.0.0.1 from the kernel.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for firmware in "${firmwares[@]}"; do
    for ((boot = 1; boot <= boots; boot++)); do
        port=$(free_port)
        data_port=$(free_port)
        log=$(mktemp)
        start=$(date +%s.%N)
        ./run.sh --no-build --firmware "$firmware" --echo-port "$port" \
            --discard-port "$(free_port)" --chargen-port "$(free_port)" \
            --netperf-port "$(free_port)" --data-ports "$data_port-$data_port" \
            </dev/null >"$log" 2>&1 &
        pid=$!
        # Retries the connection until the guest echoes a byte or 60 s pass.
        first_byte=$(python3 - "$port" "$start" <<'PYTHON'
import socket, sys, time
port, start = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"x")
            if connection.recv(1) == b"x":
                print(f"{time.time() - start:.3f}")
                sys.exit(0)
    except OSError:
        time.sleep(0.005)
print("timeout")
PYTHON
)
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        kernel_us=$(grep -o 'boot took [0-9]* us' "$log" | grep -o '[0-9]*' || echo "?")
        echo "firmware=$firmware boot=$boot kernel_entry_to_listening_us=$kernel_us wall_to_first_echo_s=$first_byte"
        rm -f "$log"
    done
done
