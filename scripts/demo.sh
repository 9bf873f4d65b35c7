#!/usr/bin/env bash
# The main job: gammaray end to end on one machine, by itself, in about a minute.
#  1. installs what is missing (scripts/setup.sh) and builds a demo ext4 disk image;
#  2. `gammaray up`: embedded NATS, capture (NBD), inferencer, view (gRPC + FUSE mount);
#  3. boots a real Linux guest (QEMU, TCG) whose disk is the capture's NBD export; inside, a workload appends to
#     a log file every second, creates, renames and deletes files;
#  4. meanwhile shows, side by side, the live event stream (`gammaray follow`) and the log file as seen through
#     the FUSE mount (`tail -F`), both outside the guest;
#  5. stops everything cleanly and prints a summary (events by kind, the final tree from the view).
# Env: GAMMARAY_DEMO_DIR (work dir, default a new temp dir), GAMMARAY_DEMO_LINES (log lines, default 12).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=${GAMMARAY_DEMO_DIR:-$(mktemp -d /tmp/gammaray-demo.XXXXXX)}
lines=${GAMMARAY_DEMO_LINES:-12}
mkdir -p "$work"
cli=packages/cli/bin/gammaray.js # background jobs run node directly, so $! is the process to signal
gammaray() { node "$cli" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "${up_pid:-}" ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if mountpoint -q "$work/mnt" 2>/dev/null; then fusermount -u "$work/mnt" 2>/dev/null || umount -l "$work/mnt" || true; fi
}
trap cleanup EXIT

say "building a demo ext4 disk image ($work/demo.img)"
rm -rf "$work/src" "$work/data" "$work/demo.img"
mkdir -p "$work/src/etc" "$work/src/home/alice/notes" "$work/src/var/log" "$work/mnt"
echo "demo-host" > "$work/src/etc/hostname"
printf 'hello from the guest\n' > "$work/src/home/alice/notes/todo.txt"
echo "boot" > "$work/src/var/log/app.log"
ln -sf ../home/alice/notes/todo.txt "$work/src/etc/motd"
mkfs.ext4 -q -F -L demo -d "$work/src" "$work/demo.img" 64M

nbd_port=$(free_port)
grpc_port=$(free_port)
say "gammaray up --image demo.img --disk demo --mount $work/mnt"
node "$cli" up --image "$work/demo.img" --disk demo --mount "$work/mnt" --data-dir "$work/data" \
  --listen "127.0.0.1:$nbd_port" --grpc "127.0.0.1:$grpc_port" > "$work/up.out" 2> "$work/up.err" &
up_pid=$!
for _ in $(seq 1 240); do
  grep -q 'gammaray is up' "$work/up.out" 2>/dev/null && break
  if ! kill -0 "$up_pid" 2>/dev/null; then cat "$work/up.err" >&2; echo "gammaray up failed" >&2; exit 1; fi
  sleep 0.25
done
grep -q 'gammaray is up' "$work/up.out" || { cat "$work/up.err" >&2; echo "gammaray up did not start in 60 s" >&2; exit 1; }
cat "$work/up.out"
nats=$(sed -n 's/^  NATS: *\(nats:\/\/[^ ]*\).*/\1/p' "$work/up.out")

# The event stream and the file through the mount, side by side (one prefixed line each, as they arrive).
node "$cli" follow demo --nats "$nats" --from-start > "$work/events.txt" 2>&1 &
pids+=($!)
node "$cli" follow demo --nats "$nats" --from-start --json > "$work/events.json" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 120); do [[ -e "$work/mnt/demo/var/log/app.log" ]] && break; sleep 0.25; done
tail -n +1 -F "$work/mnt/demo/var/log/app.log" > "$work/mount-tail.txt" 2>/dev/null &
pids+=($!)
tail -n +1 -F "$work/events.txt" 2>/dev/null > >(sed -u 's/^/  [event stream] /') &
pids+=($!)
tail -n +1 -F "$work/mount-tail.txt" 2>/dev/null > >(sed -u 's/^/  [through the FUSE mount] /') &
pids+=($!)

cat > "$work/workload.sh" <<EOF
# Runs inside the guest, in /mnt (its ext4 root on /dev/vda); the journal commits every 5 s (the default).
for i in \$(seq 1 $lines); do echo "log line \$i" >> var/log/app.log; sleep 1; done
echo "created in the guest" > home/alice/new.txt
sleep 6
mv home/alice/new.txt home/alice/renamed.txt
mkdir -p srv && echo "report" > srv/report.txt
sleep 6
rm home/alice/notes/todo.txt
chmod 600 srv/report.txt
sleep 6
EOF
say "booting a Linux guest (QEMU, TCG) on nbd://127.0.0.1:$nbd_port/demo: it appends to /var/log/app.log, creates, renames and deletes files"
bash test/guest/run-guest --nbd "nbd://127.0.0.1:$nbd_port/demo" --workload "$work/workload.sh" --timeout 240 > "$work/guest.log" 2>&1 || {
  echo "the guest failed; its console:" >&2; tail -30 "$work/guest.log" >&2; exit 1; }
sleep 7 # the last commit, and the view catching up

for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
say "final tree from the view (gammaray tree demo --grpc 127.0.0.1:$grpc_port)"
gammaray tree demo --grpc "127.0.0.1:$grpc_port" | tee "$work/tree.txt"
say "stopping (Ctrl-C to gammaray up)"
kill -INT "$up_pid"
wait "$up_pid" || { echo "gammaray up did not stop cleanly" >&2; cat "$work/up.err" >&2; exit 1; }
up_pid=

say "summary"
node -e '
const fs = require("fs");
const evs = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const by = {};
for (const e of evs) by[e.kind] = (by[e.kind] || 0) + 1;
console.log(`events: ${evs.length} (${Object.entries(by).map(([k, n]) => `${k} ${n}`).join(", ")})`);
for (const e of evs.filter((e) => ["create", "rename", "delete", "attr"].includes(e.kind))) console.log(`  ${e.kind} ${e.from ? e.from + " -> " : ""}${e.path}${e.changes ? " (" + Object.keys(e.changes).join(", ") + ")" : ""}`);
' "$work/events.json"
echo "log lines seen through the FUSE mount: $(grep -c '^log line' "$work/mount-tail.txt" || true) of $lines"
echo "work files (image, logs, event stream) are in $work"
