#!/usr/bin/env bash
# nin-edge's runtime on arm64, emulated: a Debian bookworm arm64 root run by qemu-user on an x86-64 host.
#
#   tests/edge/arm64.sh [build]                         build the root, or reuse it when it is complete
#   tests/edge/arm64.sh run [-b HOST:GUEST]... -- CMD [ARG...]
#                                                       run CMD in the root with this checkout at /project
#   tests/edge/arm64.sh where                           print the cache folder
#
# `run` starts CMD in the same folder of the checkout as the caller's (/project when the caller is outside
# it), with /opt/venv/bin first on PATH: the root's Python 3.11 venv holding the aarch64 wheels of onnxruntime,
# numpy, Pillow and click (the runtime's dependencies; nin-edge itself is installed there by whoever needs it,
# e.g. `pip install --no-deps` of a wheel, as tests/test_arm64.py does). A binary built for aarch64 in the
# checkout runs as it is: `tests/edge/arm64.sh run -- build/c-aarch64/nin-classify ...`.
# `-b HOST:GUEST` mounts another host folder (repeatable). The mounts live in a private mount namespace
# and vanish with CMD: nothing to unmount, nothing leaks to the host.
#
# Cache: ${NIN_EDGE_CACHE:-$HOME/.cache/nin-edge}/arm64 (outside the checkout; about 500 MB):
#   rootfs/          the root (debootstrap --variant=minbase, python3, python3-venv; /opt/venv)
#   wheels/          the aarch64 wheels, downloaded on the host
#   cpuinfo          an aarch64-looking /proc/cpuinfo for the root (see below)
#   *.done           finished steps, skipped on the next build; delete one (or the folder) to redo it
# Needs root (debootstrap, chroot, mount), the packages qemu-user-static, debootstrap and binfmt-support,
# binfmt_misc in the kernel, the Debian mirror and PyPI (first build only). Knobs: DEBIAN_MIRROR,
# NIN_EDGE_ARM64_PIP (pip specs for the root's venv; default "numpy onnxruntime pillow click").
#
# Two traps this script exists for (measured with qemu 7.2 and pip 23.2, 2026-12-06):
# * qemu-user 7.2 shows the guest the HOST's /proc/cpuinfo (x86 flags); onnxruntime's cpuinfo library parses
#   it as ARM's and segfaults when a session is created. `run` mounts an aarch64-looking file over it.
# * `pip download --platform manylinux_2_36_aarch64` alone does not take older glibc tags, and pip then
#   picks, silently, the newest release with a wheel for the tags given (onnxruntime 1.16.3 for
#   manylinux2014 alone). Every tag up to bookworm's glibc 2.36 is listed.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CHECKOUT=$(cd "$(dirname "$SELF")/../.." && pwd)
CACHE=${NIN_EDGE_CACHE:-${HOME:-/root}/.cache/nin-edge}/arm64
ROOT=$CACHE/rootfs
VENV=/opt/venv
SUITE=bookworm
PY_VERSION=3.11
GLIBC_MINOR=36
SPECS=${NIN_EDGE_ARM64_PIP:-numpy onnxruntime pillow click}

die() {
    echo "error: $*" >&2
    exit 1
}
usage() {
    echo "usage: tests/edge/arm64.sh [build] | run [-b HOST:GUEST]... -- CMD [ARG...] | where" >&2
    exit 2
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "tests/edge/arm64.sh needs root (debootstrap, chroot and mount); run it as root"
}

# binfmt_misc must send aarch64 ELF files to qemu. Debian's qemu-user-static registers qemu-aarch64 with the
# F flag (the interpreter is opened at registration), so the root needs no qemu binary of its own.
check_binfmt() {
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    if [ ! -e "$entry" ] && command -v update-binfmts >/dev/null; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if [ ! -e "$entry" ] || ! grep -qx enabled "$entry"; then
        die "binfmt_misc has no enabled qemu-aarch64 entry, so this machine cannot run aarch64 programs: \
$( [ -e /proc/sys/fs/binfmt_misc/status ] && echo "install qemu-user-static and binfmt-support \
(apt-get install qemu-user-static binfmt-support) and run update-binfmts --enable qemu-aarch64" \
|| echo "binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc and could not be (a container without \
binfmt_misc? run on a host or VM where 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc' works)")"
    fi
}

build() {
    need_root
    local missing=()
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    [ ${#missing[@]} -eq 0 ] || die "missing host packages: apt-get install ${missing[*]}"
    check_binfmt
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9 # one build at a time; `run` waits for it
    local t0=$SECONDS
    step() { echo "[arm64 $((SECONDS - t0)) s] $*"; }

    if [ ! -f "$CACHE/stage1.done" ]; then
        step "debootstrap stage 1 (host): $SUITE arm64 minbase into $ROOT"
        rm -rf "$ROOT"
        debootstrap --arch=arm64 --variant=minbase --foreign --include=python3,python3-venv,ca-certificates \
            "$SUITE" "$ROOT" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 ||
            die "debootstrap stage 1 failed; see $CACHE/debootstrap.log"
        touch "$CACHE/stage1.done"
    fi
    if [ ! -f "$CACHE/stage2.done" ]; then
        step "debootstrap stage 2 (emulated: the slow part)"
        chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$CACHE/debootstrap.log" 2>&1 ||
            { rm -f "$CACHE/stage1.done"; die "debootstrap stage 2 failed; see $CACHE/debootstrap.log (and \
$ROOT/debootstrap/debootstrap.log); the next build starts again from stage 1"; }
        rm -f "$ROOT"/var/cache/apt/archives/*.deb # installed now
        touch "$CACHE/stage2.done"
    fi
    if [ ! -f "$CACHE/cpuinfo" ]; then
        # Only its shape matters: onnxruntime takes the CPU's features from getauxval(AT_HWCAP), which qemu fills.
        for i in 0 1 2 3; do
            printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i"
        done >"$CACHE/cpuinfo.tmp"
        mv "$CACHE/cpuinfo.tmp" "$CACHE/cpuinfo"
    fi
    if [ ! -f "$CACHE/wheels.done" ]; then
        step "pip download (host) of the aarch64 wheels for cp${PY_VERSION/./}: $SPECS"
        local platforms=(--platform manylinux2014_aarch64) v
        for v in $(seq 17 "$GLIBC_MINOR"); do platforms+=(--platform "manylinux_2_${v}_aarch64"); done
        rm -rf "$CACHE/wheels"
        # shellcheck disable=SC2086 # SPECS is a list of pip specs
        python3 -m pip download --quiet --dest "$CACHE/wheels" "${platforms[@]}" --implementation cp \
            --python-version "$PY_VERSION" --only-binary=:all: $SPECS
        echo "[arm64] wheels: $(cd "$CACHE/wheels" && echo *.whl)" # an onnxruntime 1.16 here means a tag is missing
        touch "$CACHE/wheels.done"
    fi
    if [ ! -f "$CACHE/venv.done" ]; then
        step "python3 -m venv $VENV in the root, wheels installed offline (emulated)"
        # shellcheck disable=SC2086
        in_root -b "$CACHE/wheels:/wheels" -- /bin/sh -ec "rm -rf $VENV; python3 -m venv $VENV;
            $VENV/bin/python -m pip install --quiet --no-index --find-links /wheels $SPECS"
        touch "$CACHE/venv.done"
    fi
    in_root -- python -c 'import platform, onnxruntime; from importlib.metadata import version
print(f"[arm64] {platform.machine()} Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}",
      *(f"{n} {version(n)}" for n in ("numpy", "pillow", "click")), sep=", ")'
    step "ready: $ROOT"
}

# in_root [-b HOST:GUEST]... -- CMD...: CMD in the root, in a private mount namespace (see the header).
in_root() {
    local binds=()
    while [ $# -gt 0 ]; do
        case "$1" in
        -b)
            [ $# -ge 2 ] && [[ "$2" == *:/* ]] || die "-b takes HOST:GUEST (an absolute GUEST path), got '${2:-}'"
            [ -e "${2%%:*}" ] || die "-b: host path '${2%%:*}' does not exist"
            binds+=("$2")
            shift 2
            ;;
        --)
            shift
            break
            ;;
        *) usage ;;
        esac
    done
    [ $# -ge 1 ] || usage
    local where=/project
    case "$PWD/" in "$CHECKOUT"/*) where=/project${PWD#"$CHECKOUT"} ;; esac
    unshare --mount --propagation private -- /bin/bash -ec '
        root=$1 cache=$2 checkout=$3 where=$4 nbinds=$5; shift 5
        mount -t proc proc "$root/proc"
        mount --bind "$cache/cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/tmp"
        mkdir -p "$root/project"
        mount --bind "$checkout" "$root/project"
        for _ in $(seq 1 "$nbinds"); do
            mkdir -p "$root/${1#*:}"
            mount --bind "${1%%:*}" "$root/${1#*:}"
            shift
        done
        exec chroot "$root" /usr/bin/env -i PATH='"$VENV"'/bin:/usr/local/bin:/usr/bin:/bin HOME=/root \
            LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$where" "$@"
    ' in_root "$ROOT" "$CACHE" "$CHECKOUT" "$where" "${#binds[@]}" ${binds[@]+"${binds[@]}"} "$@"
}

run() {
    need_root
    [ -f "$CACHE/venv.done" ] || die "no arm64 root in $CACHE: build it first with tests/edge/arm64.sh build"
    check_binfmt
    exec 9>"$CACHE/.lock"
    flock -s 9 # not while a build changes the root
    in_root "$@"
}

main() {
    case "${1:-build}" in
    build) build ;;
    run)
        shift
        run "$@"
        ;;
    where) echo "$CACHE" ;;
    *) usage ;;
    esac
}

# One line, read whole before it runs: a script edited while a command runs in the root cannot misread its tail.
main "$@"; exit $?
