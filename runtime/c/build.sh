#!/usr/bin/env bash
# runtime/c/build.sh [--target aarch64]
#
# Builds nin-edge's C library (libnin_edge.so), the nin-classify example and the C/C++ tests with
# CMake, into build/c (or build/c-aarch64 with --target aarch64) at the top of the checkout.
# Run it with the project's venv active: the library links against the libonnxruntime.so of the
# onnxruntime wheel that venv has (no second copy of onnxruntime: build/c/libonnxruntime.so.1 is a
# link to it). For aarch64 it downloads the aarch64 wheel of the same version and copies its library
# beside the binaries, so build/c-aarch64 can be copied to an arm64 machine as a whole.
#
# Downloads are kept in ${NIN_EDGE_CACHE:-$HOME/.cache/nin-edge}/c, so a second run is quick:
#   - onnxruntime's C headers: Debian sid's libonnxruntime-dev (the wheel ships none), fetched with a
#     private apt configuration inside the cache (the host's apt sources are untouched) and unpacked
#     with dpkg-deb -x, never installed. Its ORT_API_VERSION must not be newer than the library's.
#   - stb_image.h (Debian's libstb-dev) when /usr/include/stb is missing: apt-get download + dpkg-deb -x.
#   - the aarch64 onnxruntime wheel (--target aarch64).
# Needs cmake, gcc and g++ (and gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu for --target aarch64).
# Environment: NIN_EDGE_CACHE (cache root), DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

target=host
while [ $# -gt 0 ]; do
    case "$1" in
    --target)
        [ $# -ge 2 ] || { echo "error: --target needs a value: aarch64" >&2; exit 2; }
        target=$2
        shift 2
        ;;
    --target=*) target=${1#--target=}; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1'; usage: $0 [--target aarch64]" >&2; exit 2 ;;
    esac
done
case "$target" in
host | aarch64) ;;
*) echo "error: --target '$target' is not supported; expected aarch64 (or no --target for this machine)" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${NIN_EDGE_CACHE:-$HOME/.cache/nin-edge}/c
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"
t0=$(date +%s)
step() { echo "== [$(($(date +%s) - t0))s] $*"; }
die() { echo "error: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null || die "$1 is not installed: $2"; }
need cmake "apt-get install cmake"
need gcc "apt-get install gcc g++"
need g++ "apt-get install gcc g++"
need dpkg-deb "build on Debian or Ubuntu (dpkg-deb unpacks the header packages)"
if [ "$target" = aarch64 ]; then
    need aarch64-linux-gnu-gcc "apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu"
    need aarch64-linux-gnu-g++ "apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu"
fi

# --- the onnxruntime wheel of the active venv -------------------------------------------------------
command -v python >/dev/null || die "no python on PATH: activate the project's venv (. .venv/bin/activate)"
ORT_DIR=$(python -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))' 2>/dev/null) \
    || die "python cannot import onnxruntime: activate the project's venv (. .venv/bin/activate)"
ORT_VERSION=$(python -c 'import onnxruntime; print(onnxruntime.__version__)')
HOST_LIB=$(ls "$ORT_DIR"/capi/libonnxruntime.so.1.* 2>/dev/null | head -1)
[ -n "$HOST_LIB" ] || die "the onnxruntime wheel in $ORT_DIR has no capi/libonnxruntime.so.1.*"

# --- onnxruntime's C headers: libonnxruntime-dev from Debian sid, through a private apt configuration -
HEADERS="$CACHE/onnxruntime-headers"
if [ ! -f "$HEADERS.done" ]; then
    step "apt-get download libonnxruntime-dev (Debian sid) into $CACHE, private apt configuration"
    A="$CACHE/apt"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" >"$A/sources.list"
    apt_opts=(-o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts="$A/parts"
        -o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts="$A/parts"
        -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" -qq update
    rm -f "$CACHE"/libonnxruntime-dev_*.deb
    (cd "$CACHE" && apt-get "${apt_opts[@]}" -qq download libonnxruntime-dev)
    rm -rf "$HEADERS" "$A/lists" # the package lists (20 MB) are not needed any more
    dpkg-deb -x "$CACHE"/libonnxruntime-dev_*.deb "$HEADERS"
    touch "$HEADERS.done"
fi
ORT_INCLUDE="$HEADERS/usr/include/onnxruntime"
HEADER_API=$(awk '/#define ORT_API_VERSION/ {print $3}' "$ORT_INCLUDE/onnxruntime_c_api.h")
LIB_API=$(echo "$ORT_VERSION" | cut -d. -f2)
# The C API only grows: GetApi(v) returns NULL for a v newer than the library's.
[ "$HEADER_API" -le "$LIB_API" ] || die "the onnxruntime headers' C API version $HEADER_API is newer than \
onnxruntime $ORT_VERSION offers ($LIB_API): upgrade onnxruntime in the venv, or delete $HEADERS.done and \
fetch older headers"

# --- stb_image.h ---------------------------------------------------------------------------------------
STB="$CACHE/stb"
if [ ! -f "$STB/stb_image.h" ]; then
    mkdir -p "$STB"
    if [ -f /usr/include/stb/stb_image.h ]; then
        ln -sf /usr/include/stb/stb_image.h "$STB/stb_image.h"
    else
        step "apt-get download libstb-dev into $CACHE"
        (cd "$CACHE" && rm -f libstb-dev_*.deb && apt-get -qq download libstb-dev)
        dpkg-deb -x "$CACHE"/libstb-dev_*.deb "$CACHE/stb-deb"
        cp "$CACHE/stb-deb/usr/include/stb/stb_image.h" "$STB/stb_image.h"
    fi
fi

# --- the library to link and ship -----------------------------------------------------------------------
if [ "$target" = host ]; then
    OUT="$ROOT/build/c"
    mkdir -p "$OUT"
    # The wheel ships libonnxruntime.so.1.X.Y only; its SONAME (what binaries ask the loader for) is
    # libonnxruntime.so.1. A link of that name beside the binaries (rpath $ORIGIN) points into the venv.
    ln -sfn "$HOST_LIB" "$OUT/libonnxruntime.so.1"
    toolchain=()
else
    OUT="$ROOT/build/c-aarch64"
    WHEELS="$CACHE/onnxruntime-$ORT_VERSION-aarch64"
    if [ ! -f "$WHEELS/libonnxruntime.so.1" ]; then
        step "pip download onnxruntime==$ORT_VERSION for manylinux aarch64"
        rm -rf "$WHEELS" && mkdir -p "$WHEELS"
        # Every manylinux tag up to glibc 2.36: with one old tag alone pip silently picks an old release.
        platforms=()
        for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
        python -m pip download --quiet --no-deps --only-binary=:all: "${platforms[@]}" -d "$WHEELS" \
            "onnxruntime==$ORT_VERSION"
        python - "$WHEELS" <<'PY'
import os, pathlib, sys, zipfile
folder = pathlib.Path(sys.argv[1])
wheel = next(folder.glob("onnxruntime-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so.1"))
    target = folder / "libonnxruntime.so.1"
    target.write_bytes(z.read(name))
    os.chmod(target, 0o755)
print(f"   {wheel.name}: {name}")
PY
        rm -f "$WHEELS"/*.whl
    fi
    mkdir -p "$OUT"
    # A copy, not a link: the folder is what goes to the arm64 machine.
    cp -f "$WHEELS/libonnxruntime.so.1" "$OUT/libonnxruntime.so.1"
    toolchain=(-DCMAKE_TOOLCHAIN_FILE="$HERE/aarch64.cmake")
fi

# --- configure and build -----------------------------------------------------------------------------
step "cmake: $target build in $OUT (onnxruntime $ORT_VERSION, headers API $HEADER_API)"
cmake -S "$HERE" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release "${toolchain[@]}" \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$OUT" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$OUT" \
    -DORT_INCLUDE_DIR="$ORT_INCLUDE" -DORT_LIBRARY="$OUT/libonnxruntime.so.1" -DSTB_INCLUDE_DIR="$STB" >/dev/null
cmake --build "$OUT/cmake" --parallel "$(nproc)"
step "done: $OUT/nin-classify, $OUT/libnin_edge.so"
