#!/usr/bin/env bash
# Boots the kernel once per wait mode and records netperf figures under the
# accelerator run.sh picks:
# - netperf -N against echo (TCP_RR, UDP_RR);
# - TCP_RR and UDP_RR through the netperf service, with latency percentiles;
# - TCP_STREAM and TCP_MAERTS;
# - the guest's interrupts, notifications and halts per transaction of one
#   TCP_RR run, read from the console.
#
# usage: tools/measure-netperf.sh [SECONDS] [MODE...]   (defaults: 10 irq poll)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
modes=("${@}")
[ ${#modes[@]} -eq 0 ] && modes=(irq poll)

./run.sh build >/dev/null

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sends one console command and prints its output.
console() {
    python3 - "$1" "$2" <<'PYTHON'
import socket, sys, time
path, command = sys.argv[1], sys.argv[2]
connection = socket.socket(socket.AF_UNIX)
connection.connect(path)
connection.settimeout(0.5)
connection.sendall(command.encode() + b"\r")
output, deadline = b"", time.time() + 10
while time.time() < deadline and not output.endswith(b"\n> "):
    try:
        output += connection.recv(65536)
    except socket.timeout:
        pass
print(output.decode(errors="replace").replace("\r", ""))
PYTHON
}

for mode in "${modes[@]}"; do
    echo "== mode=$mode"
    echo_port=$(free_port); control=$(free_port); data=$(free_port)
    socket_path=$(mktemp -u /tmp/vb-measure-XXXXXX.sock)
    log=$(mktemp)
    ./run.sh --no-build --append "mode=$mode" --echo-port "$echo_port" --netperf-port "$control" \
        --discard-port "$(free_port)" --chargen-port "$(free_port)" --data-ports "$data-$data" \
        --serial socket:"$socket_path" --serial-log "$log" </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 120); do grep -q "listening" "$log" 2>/dev/null && break; sleep 0.5; done

    for test in TCP_RR UDP_RR; do
        printf 'netperf -N %s: ' "$test"
        netperf -N -P 0 -H 127.0.0.1 -t "$test" -l "$seconds" -- -P ",$echo_port" -r 1,1 |
            awk 'NF >= 6 { print $6 " transactions/s"; exit }'
    done
    selectors=TRANSACTION_RATE,MEAN_LATENCY,P50_LATENCY,P99_LATENCY
    for test in TCP_RR UDP_RR; do
        printf '%s %s: ' "$test" "$selectors"
        netperf -P 0 -H 127.0.0.1 -p "$control" -t "$test" -l "$seconds" -- -o "$selectors" | tail -1
    done
    for test in TCP_STREAM TCP_MAERTS; do
        printf '%s (10^6 bits/s): ' "$test"
        netperf -P 0 -H 127.0.0.1 -p "$control" -t "$test" -l "$seconds" | tail -1 | awk '{print $NF}'
    done

    before=$(console "$socket_path" stats)
    rate=$(netperf -P 0 -H 127.0.0.1 -p "$control" -t TCP_RR -l "$seconds" -- -o TRANSACTION_RATE | tail -1)
    after=$(console "$socket_path" stats)
    python3 - "$rate" "$seconds" "$before" "$after" <<'PYTHON'
import sys
rate, seconds, before, after = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
def value(text, record, filters, key):
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == record and all(f in words for f in filters):
            for word in words:
                if word.startswith(key + "="):
                    return int(word.split("=", 1)[1])
    return 0
transactions = rate * seconds
def per_transaction(record, filters, key):
    return (value(after, record, filters, key) - value(before, record, filters, key)) / transactions
print(f"counters over one TCP_RR ({transactions:.0f} transactions):")
print(f"  receive interrupts per transaction:  {per_transaction('queue', ['name=receive'], 'interrupts'):.3f}")
print(f"  transmit interrupts per transaction: {per_transaction('queue', ['name=transmit'], 'interrupts'):.3f}")
print(f"  receive kicks per transaction:       {per_transaction('queue', ['name=receive'], 'kicks'):.3f}")
print(f"  transmit kicks per transaction:      {per_transaction('queue', ['name=transmit'], 'kicks'):.3f}")
print(f"  halts per transaction:               {per_transaction('system', [], 'halts'):.3f}")
PYTHON
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log" "$socket_path"
done
