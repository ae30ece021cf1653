#!/usr/bin/env bash
# deps.sh: install what strata's build, tests and demo need on a bare Debian
# bookworm machine, as root. Safe to run again: it only acts on what is
# missing, so `make test` can call it every time.
set -euo pipefail

APT_PACKAGES=(fuse-overlayfs fio hyperfine attr acl util-linux python3 curl docker-registry debootstrap containerd runc)

die() {
	echo "deps: $*" >&2
	exit 1
}

log() {
	echo "deps: $*"
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (FUSE, overlayfs, mknod and apt need it)"
}

# Go is provisioned at /usr/local/go on these machines; the module needs
# a recent toolchain, so a missing one is an error, not something to guess at.
ensure_go() {
	if ! command -v go >/dev/null 2>&1; then
		[[ -x /usr/local/go/bin/go ]] || die "go not found on PATH nor at /usr/local/go/bin/go"
		export PATH="/usr/local/go/bin:$PATH"
	fi
	log "$(go version)"
}

missing_packages() {
	local p
	for p in "${APT_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			echo "$p"
		fi
	done
}

ensure_packages() {
	local missing
	missing=$(missing_packages)
	if [[ -z $missing ]]; then
		log "apt packages present: ${APT_PACKAGES[*]}"
		return
	fi
	# shellcheck disable=SC2086 # one package name per word
	log "installing:" $missing
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
}

# Built-in kernels answer modprobe with an error even though the feature
# works, so only /proc/filesystems decides.
ensure_kernel() {
	local fs
	for fs in overlay fuse; do
		modprobe "$fs" 2>/dev/null || true
		grep -qw "$fs" /proc/filesystems || die "kernel has no $fs filesystem (modprobe $fs failed)"
	done
	if [[ ! -c /dev/fuse ]]; then
		mknod -m 0666 /dev/fuse c 10 229 || die "/dev/fuse missing and mknod failed"
	fi
	[[ -c /dev/fuse ]] || die "/dev/fuse is not a character device"
	log "kernel: overlay and fuse available, /dev/fuse present"
}

ensure_modules() {
	cd "$(dirname "$0")/.."
	go mod download
	log "go modules downloaded"
}

need_root
ensure_go
ensure_packages
ensure_kernel
ensure_modules
