#!/usr/bin/env bash
# layers.sh OUT: builds the benchmark image's layer directories from this
# machine's files, the way scripts/demo.sh builds its base layer.
#
#   OUT/base  merged-/usr rootfs: dash, python3 with its shared libraries,
#             loader and stdlib (tests, GUI and installers left out)
#   OUT/bulk  /usr/share/locale and /usr/share/i18n: real files a container
#             image carries and python3 -c 'print(1)' never reads
#   OUT/app   /app/hello.py and an OCI whiteout (.wh.motd) of /etc/motd
set -euo pipefail
# The benchmark runs with umask 0 (for extraction); the layers get the usual modes.
umask 022
OUT=$1
BASE=$OUT/base BULK=$OUT/bulk APP=$OUT/app
PY=/usr/bin/python3
rm -rf "$BASE" "$BULK" "$APP"

copy_to_base() {
	local dir
	dir=$(realpath "$(dirname "$1")")
	mkdir -p "$BASE$dir"
	cp -L --preserve=mode,timestamps "$1" "$BASE$dir/$(basename "$1")"
}

mkdir -p "$BASE"/{etc,root,usr/bin,usr/sbin,usr/lib}
install -d -m 1777 "$BASE/tmp"
for d in bin sbin lib lib64; do
	if [[ -L /$d ]]; then ln -s "$(readlink "/$d")" "$BASE/$d"; fi
done
bins=("$(PATH=/usr/bin:/bin type -P dash)" "$(realpath "$PY")")
for b in "${bins[@]}"; do copy_to_base "$b"; done
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' |
	sort -u | while read -r p; do copy_to_base "$p"; done
ln -s dash "$BASE/usr/bin/sh"
ln -s "$(basename "$(realpath "$PY")")" "$BASE/usr/bin/python3"
stdlib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$BASE$(dirname "$stdlib")"
tar -C "$(dirname "$stdlib")" -chf - --exclude=test --exclude=idlelib --exclude=tkinter \
	--exclude=turtledemo --exclude=ensurepip --exclude=lib2to3 "$(basename "$stdlib")" |
	tar -C "$BASE$(dirname "$stdlib")" -xf -
echo 'root:x:0:0:root:/root:/bin/sh' >"$BASE/etc/passwd"
echo 'root:x:0:' >"$BASE/etc/group"
echo 'base layer; the app layer deletes this file' >"$BASE/etc/motd"

mkdir -p "$BULK/usr/share"
cp -a /usr/share/locale /usr/share/i18n "$BULK/usr/share/"

mkdir -p "$APP/app" "$APP/etc"
echo 'print("hello from /app")' >"$APP/app/hello.py"
: >"$APP/etc/.wh.motd"
du -sm "$BASE" "$BULK" "$APP"
