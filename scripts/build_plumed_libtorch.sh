#!/usr/bin/env bash
# Opt-in: build a PLUMED kernel with libtorch (the PYTORCH module, so PYTORCH_MODEL works) against
# the torch installed in the current Python environment, from the PLUMED 2.11 source that ships in
# the source distribution of hillclimber (the package that provides the plain kernel the tests use).
#
#   bash scripts/build_plumed_libtorch.sh [--check] [--mpi] [PREFIX]
#
# PREFIX defaults to external/plumed-libtorch (git-ignored; with --mpi, external/plumed-libtorch-mpi).
# --mpi: configure with CXX=mpicxx (Debian's OpenMPI, libopenmpi-dev; installed when missing and
# running as root), for an MPI GROMACS (`scripts/build_gromacs_plumed.sh --mpi`) and -multidir
# walkers. The build time is in docs/export.md (tens of minutes on 2 cores). At the end
# it prints the line to export PLUMED_KERNEL; with it set, tests/deploy/test_plumed_libtorch.py runs
# plumed.dat with PYTORCH_MODEL end to end.
#
# Environment: PYTHON (default python3), JOBS (default: number of cores), HILLCLIMBER_VERSION
# (default 0.1.8), WORKDIR (default: a temporary folder, removed at the end unless KEEP_WORKDIR=1).
# Cached: a finished build writes PREFIX/.stamp (hillclimber and torch versions, C++ ABI); a second
# call with the same ones only prints the export line. FORCE=1 rebuilds. --check: exit 0 if built
# (cached), 3 if a build would be needed, and build nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
CHECK=0
MPI=0
while [ $# -gt 0 ]; do
    case "$1" in
        --check) CHECK=1; shift ;;
        --mpi) MPI=1; shift ;;
        -*) echo "error: unknown option '$1' (expected --check, --mpi, PREFIX)" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ "$MPI" = 1 ]; then DEFAULT_PREFIX=$ROOT/external/plumed-libtorch-mpi; else DEFAULT_PREFIX=$ROOT/external/plumed-libtorch; fi
PREFIX=${1:-$DEFAULT_PREFIX}
case "$PREFIX" in /*) ;; *) PREFIX=$ROOT/$PREFIX ;; esac
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
HC_VERSION=${HILLCLIMBER_VERSION:-0.1.8}

TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
TORCH_ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
echo "torch $TORCH_VERSION at $TORCH_DIR (_GLIBCXX_USE_CXX11_ABI=$TORCH_ABI)"
for d in "$TORCH_DIR/include" "$TORCH_DIR/include/torch/csrc/api/include" "$TORCH_DIR/lib"; do
    [ -d "$d" ] || { echo "error: $d not found: this torch has no C++ headers/libraries" >&2; exit 1; }
done

KERNEL="$PREFIX/lib/libplumedKernel.so"
STAMP="hillclimber=$HC_VERSION torch=$TORCH_VERSION torch_dir=$TORCH_DIR abi=$TORCH_ABI"
if [ "$MPI" = 1 ]; then STAMP="$STAMP mpi=1"; fi
if [ "${FORCE:-0}" != 1 ] && [ -f "$KERNEL" ] && [ -f "$PREFIX/.stamp" ] && [ "$(cat "$PREFIX/.stamp")" = "$STAMP" ]; then
    echo "PLUMED with libtorch already built in $PREFIX for this torch (FORCE=1 rebuilds)"
    echo
    echo "export PLUMED_KERNEL=$KERNEL"
    exit 0
fi
if [ "$CHECK" = 1 ]; then echo "PLUMED with libtorch not built in $PREFIX for this torch"; exit 3; fi
MPI_OPTS=()
if [ "$MPI" = 1 ]; then
    if ! command -v mpicxx >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get install -y -q libopenmpi-dev openmpi-bin
        else
            echo "error: --mpi needs mpicxx (Debian: apt-get install libopenmpi-dev openmpi-bin)" >&2; exit 1
        fi
    fi
    MPI_OPTS=(--enable-mpi CXX=mpicxx CC=mpicc)
fi

if [ -n "${WORKDIR:-}" ]; then
    mkdir -p "$WORKDIR"
else
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/plumed-libtorch.XXXXXX")
    if [ "${KEEP_WORKDIR:-0}" != 1 ]; then trap 'rm -rf "$WORKDIR"' EXIT; fi
fi
echo "work folder: $WORKDIR"
cd "$WORKDIR"

# 1. The source distribution only (not --no-binary :all:, which would compile cmake too).
#    HATCH_BUILD_NO_HOOKS stops pip from running the package's own (long) build while preparing it.
HATCH_BUILD_NO_HOOKS=true "$PY" -m pip download -q --no-deps --no-binary hillclimber \
    "hillclimber==$HC_VERSION" -d sdist
SDIST=$(ls sdist/hillclimber-*.tar.gz | head -n 1)
tar -xzf "$SDIST"
SRC=$(ls -d hillclimber-*/external/plumed2 | head -n 1)
[ -x "$SRC/configure" ] || { echo "error: no PLUMED source (external/plumed2/configure) in $SDIST" >&2; exit 1; }
cd "$SRC"
echo "PLUMED source: $(pwd) (version $(cat VERSION.txt 2>/dev/null || echo unknown))"

export LIBRARY_PATH="$TORCH_DIR/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
# 2. Configure with libtorch, the pytorch and opes modules, no external BLAS/LAPACK.
./configure --prefix="$PREFIX" \
    --enable-libtorch --enable-modules=+pytorch+opes \
    --disable-external-blas --disable-external-lapack \
    --disable-static-archive --enable-rpath "${MPI_OPTS[@]}" \
    CPPFLAGS="-I$TORCH_DIR/include -I$TORCH_DIR/include/torch/csrc/api/include -D_GLIBCXX_USE_CXX11_ABI=$TORCH_ABI" \
    LDFLAGS="-L$TORCH_DIR/lib -Wl,-rpath,$TORCH_DIR/lib" \
    LIBS="-ltorch_cpu -lc10"
grep -q -- "-D__PLUMED_HAS_LIBTORCH" Makefile.conf || {
    echo "error: configure did not enable libtorch (see config.log in $(pwd))" >&2; exit 1; }
if [ "$MPI" = 1 ]; then
    grep -q -- "-D__PLUMED_HAS_MPI" Makefile.conf || {
        echo "error: configure did not enable MPI with mpicxx (see config.log in $(pwd))" >&2; exit 1; }
fi

# 3. Build and install.
make -j"$JOBS"
make install

[ -f "$KERNEL" ] || { echo "error: $KERNEL was not installed" >&2; exit 1; }
# 4. Check that the kernel knows PYTORCH_MODEL.
if PLUMED_KERNEL="$KERNEL" "$PREFIX/bin/plumed" manual --action PYTORCH_MODEL >/dev/null 2>&1; then
    echo "PYTORCH_MODEL is available in $KERNEL"
else
    echo "warning: 'plumed manual --action PYTORCH_MODEL' failed with $KERNEL" >&2
fi
echo "$STAMP" > "$PREFIX/.stamp"
echo
echo "export PLUMED_KERNEL=$KERNEL"
