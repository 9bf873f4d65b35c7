#!/usr/bin/env bash
# The main job for now: builds a demo ext4 disk image from a generated tree
# (without mounting anything) and crawls it with gammaray, printing the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=${GAMMARAY_DEMO_DIR:-$(mktemp -d /tmp/gammaray-demo.XXXXXX)}
mkdir -p "$work/src/etc" "$work/src/home/alice/notes" "$work/src/var/log"
echo "demo-host" > "$work/src/etc/hostname"
printf 'hello from the guest\n' > "$work/src/home/alice/notes/todo.txt"
for i in $(seq 1 5); do echo "line $i" >> "$work/src/var/log/app.log"; done
ln -sf ../home/alice/notes/todo.txt "$work/src/etc/motd"
truncate -s 8M "$work/src/var/sparse.img"
setfattr -n user.owner -v alice "$work/src/home/alice/notes/todo.txt" 2>/dev/null || true
mkfs.ext4 -q -F -L demo -d "$work/src" "$work/demo.img" 64M

gammaray() { node packages/cli/bin/gammaray.js "$@"; }
echo "== gammaray ls -R -l $work/demo.img"
gammaray ls -R -l "$work/demo.img"
echo
echo "== gammaray stat $work/demo.img /home/alice/notes/todo.txt"
gammaray stat "$work/demo.img" /home/alice/notes/todo.txt
echo
echo "== gammaray cat $work/demo.img /etc/motd"
gammaray cat "$work/demo.img" /etc/motd
echo
echo "== gammaray crawl $work/demo.img --out $work/demo.bson"
gammaray crawl "$work/demo.img" --out "$work/demo.bson"
echo "demo files are in $work"
