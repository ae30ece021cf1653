#!/usr/bin/env bash
# demo.sh: strata at work on real layers built from this machine's files.
#
#   base layer: a tiny merged-/usr rootfs (dash, ls, cat, echo, python3 with
#               its shared libraries, loader and a trimmed stdlib, a few /etc files)
#   app layer:  /app/hello.py and an OCI whiteout (.wh.motd) deleting /etc/motd
#   upper dir:  where the container's writes land, in overlayfs format
#
# By default (STRATA_DEMO_ENGINE=registry) it hands the two layers to
# scripts/demo (Go), which pushes them as an ordinary gzip image to an
# in-process registry on loopback, converts it with `strata convert`, mounts
# the converted image lazily with `strata mount REF`, runs python3 in a chroot
# of it and reports how much of the image the mount fetched.
#
# STRATA_DEMO_ENGINE=local mounts the layer directories themselves with
# `strata mount --layer`, runs python3 in a chroot of the union, deletes a base
# file, shows what landed in the upper and that the whiteouts hold, unmounts,
# and mounts the same upper with kernel overlayfs to show its format.
# STRATA_DEMO_ENGINE=overlay runs the local steps on kernel overlayfs instead,
# which is the reference strata's semantics are checked against.
#
# Every engine removes everything it made. Run as root: `make demo`.
set -euo pipefail

cd "$(dirname "$0")/.."
STRATA=$PWD/bin/strata
ENGINE=${STRATA_DEMO_ENGINE:-registry}
HOST_PYTHON=/usr/bin/python3
MAX_BASE_MB=60

WORK=$(mktemp -d /tmp/strata-demo.XXXXXX)
BASE=$WORK/base
APP=$WORK/app
UPPER=$WORK/upper
MNT=$WORK/mnt
LOG=$WORK/strata.log
STRATA_PID=""
DEMO_PID=""

section() { printf '\n=== %s ===\n' "$*"; }

die() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

is_mounted() {
	awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# cleanup runs on every exit: unmount, stop the strata process we started
# (by PID), and only then remove the temp dir, never through a live mount.
cleanup() {
	local rc=$?
	trap - EXIT
	stop_pid "$DEMO_PID"
	if is_mounted "$MNT"; then
		if [[ $ENGINE != overlay ]]; then "$STRATA" umount "$MNT" 2>/dev/null || true; fi
		sleep 0.2
		if is_mounted "$MNT"; then umount -l "$MNT" 2>/dev/null || true; fi
	fi
	stop_pid "$STRATA_PID"
	if ((rc != 0)) && [[ -s $LOG ]]; then
		echo "--- strata log (last 20 lines) ---" >&2
		tail -n 20 "$LOG" >&2
	fi
	if is_mounted "$MNT"; then
		echo "demo: $MNT still mounted; leaving $WORK in place" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
# stop_pid stops a child we started, by its PID: SIGTERM (the Go program
# and strata mount both unmount on it), then SIGKILL after 10 s.
stop_pid() {
	local pid=$1 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
# Children run in the background and are waited for, so that a signal runs
# cleanup at once instead of after the child has finished.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

preflight() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (FUSE mount and chroot)"
	[[ -x $HOST_PYTHON ]] || die "$HOST_PYTHON missing (apt-get install python3)"
	case $ENGINE in
	registry | local) [[ -x $STRATA ]] || die "$STRATA not built (run: make build)" ;;
	overlay) ;;
	*) die "STRATA_DEMO_ENGINE must be registry, local or overlay, not $ENGINE" ;;
	esac
}

# copy_to_base copies a host file to the same canonical path in the base
# layer (so /lib64/ld-linux... lands in usr/lib64 behind the lib64 symlink).
copy_to_base() {
	local src=$1 dir dst
	dir=$(realpath "$(dirname "$src")")
	dst=$BASE$dir/$(basename "$src")
	mkdir -p "$BASE$dir"
	cp -L --preserve=mode,timestamps "$src" "$dst"
}

# The base mirrors Debian's merged /usr: /bin, /lib... are symlinks into usr/.
make_skeleton() {
	local d
	mkdir -p "$BASE"/{etc,root,usr/bin,usr/sbin,usr/lib}
	install -d -m 1777 "$BASE/tmp"
	for d in bin sbin lib lib64; do
		if [[ -L /$d ]]; then ln -s "$(readlink "/$d")" "$BASE/$d"; fi
	done
}

copy_binaries_and_libs() {
	local b path bins=()
	for b in dash ls cat echo; do
		path=$(PATH=/usr/bin:/bin type -P "$b") || die "$b not found on this machine"
		bins+=("$path")
	done
	bins+=("$(realpath "$HOST_PYTHON")")
	for b in "${bins[@]}"; do copy_to_base "$b"; done
	# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
	ldd "${bins[@]}" >"$WORK/ldd.txt" || die "ldd failed"
	awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' "$WORK/ldd.txt" |
		sort -u >"$WORK/libs.txt"
	while read -r path; do copy_to_base "$path"; done <"$WORK/libs.txt"
	echo "copied ${#bins[@]} binaries and $(wc -l <"$WORK/libs.txt") shared objects (ldd)"
	ln -s dash "$BASE/usr/bin/sh"
	ln -s "$(basename "$(realpath "$HOST_PYTHON")")" "$BASE/usr/bin/python3"
}

# Only what a plain `python3` needs: tests, GUI, build config and bundled
# installers are left out to keep the layer small. -h dereferences Debian's
# symlinks into /etc (sitecustomize.py).
copy_python_stdlib() {
	local stdlib
	stdlib=$("$HOST_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
	mkdir -p "$BASE$(dirname "$stdlib")"
	tar -C "$(dirname "$stdlib")" -chf - \
		--exclude=test --exclude=idlelib --exclude=tkinter --exclude=turtledemo \
		--exclude=ensurepip --exclude=lib2to3 --exclude=pydoc_data --exclude='config-*' \
		"$(basename "$stdlib")" | tar -C "$BASE$(dirname "$stdlib")" -xf -
}

make_etc() {
	echo strata-demo >"$BASE/etc/hostname"
	cp -L /etc/os-release "$BASE/etc/os-release"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$BASE/etc/passwd"
	echo 'root:x:0:' >"$BASE/etc/group"
	echo 'Welcome to the base layer. The app layer deletes this file.' >"$BASE/etc/motd"
}

build_base() {
	section "Building layer 1 (base): a tiny rootfs from this machine's files"
	make_skeleton
	copy_binaries_and_libs
	copy_python_stdlib
	make_etc
	local mb
	mb=$(du -sm "$BASE" | cut -f1)
	echo "base: $(find "$BASE" | wc -l) entries, ${mb} MB"
	((mb < MAX_BASE_MB)) || die "base layer is ${mb} MB, expected < ${MAX_BASE_MB} MB"
	ls -l "$BASE"
}

# The whiteout takes the OCI form strata reads; kernel overlayfs only
# understands its own form, a 0/0 character device.
build_app() {
	section "Building layer 2 (app): /app/hello.py and a whiteout of /etc/motd"
	mkdir -p "$APP/app" "$APP/etc"
	cat >"$APP/app/hello.py" <<'EOF'
import os
import sys

print(f"hello from /app/hello.py: python {sys.version.split()[0]}, "
      f"/app holds {sorted(os.listdir('/app'))}")
EOF
	if [[ $ENGINE == overlay ]]; then
		mknod "$APP/etc/motd" c 0 0
	else
		: >"$APP/etc/.wh.motd"
	fi
	find "$APP" -mindepth 1 -printf '%M %P\n'
}

wait_mounted() {
	local i
	for ((i = 0; i < 100; i++)); do
		is_mounted "$MNT" && return 0
		if [[ -n $STRATA_PID ]] && ! kill -0 "$STRATA_PID" 2>/dev/null; then
			die "strata mount exited before the mount appeared"
		fi
		sleep 0.1
	done
	die "$MNT not mounted after 10 s"
}

mount_union() {
	section "Mounting base + app with upper dir ($ENGINE)"
	mkdir -p "$UPPER" "$MNT"
	if [[ $ENGINE == overlay ]]; then
		mkdir -p "$WORK/work"
		mount -t overlay overlay -o "lowerdir=$APP:$BASE,upperdir=$UPPER,workdir=$WORK/work" "$MNT"
	else
		echo "+ strata mount --layer base --layer app --upper upper mnt &"
		"$STRATA" mount --layer "$BASE" --layer "$APP" --upper "$UPPER" "$MNT" >"$LOG" 2>&1 &
		STRATA_PID=$!
	fi
	wait_mounted
	grep -F " $MNT " /proc/self/mountinfo | awk '{ print "mounted:", $5, "type", $(NF-2) }'
}

run_in_chroot() {
	section "Running in a chroot of the union"
	local script='set -e; python3 -c "print(1)"; python3 /app/hello.py; echo written > /tmp/note.txt; ls /'
	echo "+ chroot mnt /bin/sh -c '$script'"
	local out
	# A clean environment: the host's PATH may point at interpreters the
	# union does not have; no .pyc writes, so the upper shows only our file.
	out=$(env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
		"$(type -P chroot)" "$MNT" /bin/sh -c "$script") || die "chroot command failed"
	echo "$out"
	[[ $(head -n 1 <<<"$out") == 1 ]] || die "python3 -c 'print(1)' did not print 1"
	grep -q '^hello from /app/hello.py' <<<"$out" || die "/app/hello.py did not run"
}

show_upper() {
	section "Upper dir after the run (the container's writes, overlayfs format)"
	echo "+ rm mnt/etc/hostname   (a deletion of a base file, from the host side)"
	rm "$MNT/etc/hostname"
	find "$UPPER" -mindepth 1 -printf '%M %6s  %P\n'
	[[ $(cat "$UPPER/tmp/note.txt" 2>/dev/null) == written ]] || die "upper/tmp/note.txt missing or wrong"
	[[ ! -e $BASE/tmp/note.txt ]] || die "the write leaked into the base layer"
	[[ -e $BASE/etc/hostname ]] || die "the deletion reached the base layer"
	[[ $(stat -c '%F %t:%T' "$UPPER/etc/hostname" 2>/dev/null) == 'character special file 0:0' ]] ||
		die "upper/etc/hostname is not an overlayfs whiteout (char device 0/0)"
	echo "upper/tmp/note.txt: $(cat "$UPPER/tmp/note.txt"); upper/etc/hostname: whiteout (char 0/0); base untouched"
}

show_whiteout() {
	section "Whiteout: /etc/motd is in base but deleted by app"
	echo "base/etc: $(ls "$BASE/etc" | tr '\n' ' ')"
	echo "mnt/etc:  $(ls -a "$MNT/etc" | grep -v '^\.\.\?$' | tr '\n' ' ')"
	[[ -e $BASE/etc/motd ]] || die "base/etc/motd missing"
	[[ ! -e $MNT/etc/motd ]] || die "mnt/etc/motd visible despite the whiteout"
	[[ ! -e $MNT/etc/.wh.motd ]] || die "the whiteout file itself is visible in the union"
	echo "/etc/motd is absent from the union, as is the .wh.motd marker"
}

unmount_union() {
	section "Unmounting"
	if [[ $ENGINE == overlay ]]; then
		umount "$MNT"
		return
	fi
	echo "+ strata umount mnt"
	"$STRATA" umount "$MNT"
	local i rc=0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$STRATA_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$STRATA_PID" 2>/dev/null && die "strata mount still running 10 s after umount"
	wait "$STRATA_PID" || rc=$?
	STRATA_PID=""
	((rc == 0)) || die "strata mount exited with status $rc"
	! is_mounted "$MNT" || die "$MNT still mounted after umount"
	echo "unmounted; the strata process exited 0"
}

# The upper is overlayfs's own format, so the kernel can mount it over the
# base layer (base alone: the kernel does not read the app layer's .wh. file).
reuse_upper_with_overlayfs() {
	section "The same upper dir, mounted by kernel overlayfs over base"
	mkdir -p "$WORK/work"
	echo "+ mount -t overlay overlay -o ro,lowerdir=base,upperdir=upper,workdir=work mnt"
	mount -t overlay overlay -o "ro,lowerdir=$BASE,upperdir=$UPPER,workdir=$WORK/work" "$MNT"
	echo "mnt/tmp/note.txt: $(cat "$MNT/tmp/note.txt")"
	echo "mnt/etc: $(ls "$MNT/etc" | tr '\n' ' ')"
	local ok=1
	[[ $(cat "$MNT/tmp/note.txt") == written && ! -e $MNT/etc/hostname ]] || ok=0
	umount "$MNT"
	((ok)) || die "kernel overlayfs sees a different tree in the upper"
}

# run_registry builds scripts/demo (so that the PID we stop is the
# program's own, not go run's) and runs it on the two layers.
run_registry() {
	section "Building scripts/demo (the registry story, in Go)"
	command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
	go build -o "$WORK/strata-demo" ./scripts/demo || die "go build ./scripts/demo failed"
	echo "+ go run ./scripts/demo -strata bin/strata -work WORK -layer base -layer app"
	"$WORK/strata-demo" -strata "$STRATA" -work "$WORK" -layer "$BASE" -layer "$APP" &
	DEMO_PID=$!
	local rc=0
	wait "$DEMO_PID" || rc=$?
	DEMO_PID=""
	((rc == 0)) || die "scripts/demo exited with status $rc"
}

main() {
	local start=$SECONDS
	preflight
	build_base
	build_app
	if [[ $ENGINE == registry ]]; then
		run_registry
		return
	fi
	mount_union
	run_in_chroot
	show_upper
	show_whiteout
	unmount_union
	if [[ $ENGINE == local ]]; then reuse_upper_with_overlayfs; fi
	printf '\ndemo: OK (%s): python3 ran from a 2-layer union, its write landed in the upper, whiteouts held, clean unmount, upper reusable by overlayfs; %ds\n' \
		"$ENGINE" $((SECONDS - start))
}

main "$@"
