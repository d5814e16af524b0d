#!/usr/bin/env bash
# Opt-in: build GROMACS 2022.5 patched with PLUMED (runtime mode), CPU only, so that
# `gmx mdrun -plumed plumed.dat` loads the libtorch PLUMED kernel of scripts/build_plumed_libtorch.sh
# (PYTORCH_MODEL) and runs the exported GMVAE CV.
#
#   bash scripts/build_gromacs_plumed.sh [--mpi] [--prefix PREFIX] [--plumed PLUMED_PREFIX] [--kernel SO] [--check]
#   source external/gromacs-plumed/env.sh        # GMX, PATH, PLUMED_KERNEL
#
# Source: the pristine upstream tarball of Debian's source package (gromacs_2022.5.orig.tar.gz,
# fetched with `apt-get source --download-only gromacs`; the script adds a bookworm deb-src entry
# to the apt sources when there is none and it runs as root). Debian's own patches are not applied
# (they concern Debian's packaging and tests); `plumed patch` expects the upstream files. Or give
# the tarball yourself: GROMACS_TARBALL=/path/to/gromacs-2022.5.tar.gz.
#
# PLUMED: `PLUMED_PREFIX/bin/plumed patch -p -e gromacs-2022.5 --runtime`. A runtime-patched GROMACS
# contains only PLUMED's wrapper and opens the kernel named by PLUMED_KERNEL when mdrun starts
# (default: the kernel of PLUMED_PREFIX), so the libtorch kernel is used without relinking GROMACS.
# PLUMED_PREFIX defaults to external/plumed-libtorch (build it first with
# scripts/build_plumed_libtorch.sh). --kernel names the kernel env.sh exports as PLUMED_KERNEL
# (default PLUMED_PREFIX/lib/libplumedKernel.so); in runtime mode it may come from another build of
# the same PLUMED version (e.g. patch with the PLUMED that the hillclimber wheel installs,
# `--plumed "$(python -c 'import plumed, os; print(os.path.dirname(plumed.__file__))')/_lib"`, and
# run with the libtorch kernel, `--kernel external/plumed-libtorch/lib/libplumedKernel.so`).
#
# Builds: thread-MPI by default (`gmx`; run mdrun with `-ntmpi 1` when PLUMED is on: PLUMED does not
# work across thread-MPI ranks, use OpenMP threads, `-ntomp N`); `--mpi`: an OpenMPI build
# (`gmx_mpi`, Debian's libopenmpi-dev) for `-multidir` walkers. Both install into PREFIX
# (default external/gromacs-plumed, git-ignored) and can live there together. No GPU, no tests,
# no manual, no gmxapi. FFTW from Debian (libfftw3-dev), BLAS/LAPACK and muparser bundled.
#
# Cached: the build folder (external/gromacs-build/<variant>) is kept, and a finished build
# writes PREFIX/.stamp-<variant>; a second call with the same settings only rewrites env.sh.
# FORCE=1 rebuilds, CLEAN=1 removes the build folder after installing. --check: exit 0 if built
# with these settings, 3 if a build would be needed, and change nothing.
# Time: see examples/gromacs_plumed/README.md (measured with `nice -n 10`, JOBS=2, 2 shared cores).
#
# Environment: JOBS (default: number of cores), SIMD (GROMACS' GMX_SIMD, default AUTO: the build
# machine's instruction set; set e.g. AVX2_256 for binaries that run on other machines),
# GROMACS_TARBALL, FORCE, CLEAN, CMAKE (default cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

GMX_VERSION=2022.5
VARIANT=tmpi
CHECK=0
PREFIX=$ROOT/external/gromacs-plumed
PLUMED_PREFIX=$ROOT/external/plumed-libtorch
while [ $# -gt 0 ]; do
    case "$1" in
        --mpi) VARIANT=mpi ;;
        --prefix) PREFIX=$2; shift ;;
        --plumed) PLUMED_PREFIX=$2; shift ;;
        --kernel) RUN_KERNEL=$2; shift ;;
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$1' (expected --mpi, --prefix DIR, --plumed DIR, --kernel FILE, --check)" >&2; exit 2 ;;
    esac
    shift
done
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
PREFIX=$(abspath "$PREFIX")
PLUMED_PREFIX=$(abspath "$PLUMED_PREFIX")
RUN_KERNEL=$(abspath "${RUN_KERNEL:-$PLUMED_PREFIX/lib/libplumedKernel.so}")
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SIMD=${SIMD:-AUTO}
CMAKE=${CMAKE:-cmake}
SRC_CACHE=$ROOT/external/gromacs-src
BUILD_ROOT=$ROOT/external/gromacs-build/$VARIANT
if [ "$VARIANT" = mpi ]; then GMX_BIN=gmx_mpi; else GMX_BIN=gmx; fi

# ---------------------------------------------------------------- the PLUMED that patches
PLUMED_EXE=$PLUMED_PREFIX/bin/plumed
KERNEL=$PLUMED_PREFIX/lib/libplumedKernel.so
[ -x "$PLUMED_EXE" ] && [ -f "$KERNEL" ] || {
    echo "error: no PLUMED at $PLUMED_PREFIX (expected bin/plumed and lib/libplumedKernel.so);" \
         "build it first: bash scripts/build_plumed_libtorch.sh" >&2; exit 1; }
# (LD_LIBRARY_PATH and PLUMED_ROOT: for a PLUMED moved after its installation, such as the one inside
# the hillclimber wheel, which has no rpath and was configured for another folder)
plumed_cmd() {
    LD_LIBRARY_PATH="$PLUMED_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PLUMED_ROOT="$PLUMED_PREFIX/lib/plumed" \
        PLUMED_KERNEL=$KERNEL "$PLUMED_EXE" "$@"
}
[ -f "$RUN_KERNEL" ] || echo "warning: the kernel for env.sh, $RUN_KERNEL, does not exist (yet)" >&2
PLUMED_EXE_VERSION=$(plumed_cmd info --long-version)
PLUMED_EXE_VERSION=${PLUMED_EXE_VERSION%%$'\n'*}
grep -q "gromacs-$GMX_VERSION" <<<"$(plumed_cmd patch --list-engines 2>/dev/null)" || {
    echo "error: $PLUMED_EXE (PLUMED $PLUMED_EXE_VERSION) has no patch for gromacs-$GMX_VERSION" \
         "(see '$PLUMED_EXE patch --list-engines')" >&2; exit 1; }

CMAKE_OPTS=(
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX="$PREFIX"
    -DGMX_GPU=OFF
    -DGMX_SIMD="$SIMD"
    -DGMX_FFT_LIBRARY=fftw3 -DGMX_BUILD_OWN_FFTW=OFF
    -DGMX_EXTERNAL_BLAS=OFF -DGMX_EXTERNAL_LAPACK=OFF
    -DGMX_USE_MUPARSER=INTERNAL
    -DGMX_HWLOC=OFF
    -DGMX_OPENMP=ON
    -DGMX_DEFAULT_SUFFIX=ON
    -DBUILD_TESTING=OFF -DGMX_DEVELOPER_BUILD=OFF -DREGRESSIONTEST_DOWNLOAD=OFF
    -DGMX_BUILD_HELP=OFF -DGMX_BUILD_MANUAL=OFF
    -DGMXAPI=OFF -DGMX_INSTALL_NBLIB_API=OFF -DGMX_PYTHON_PACKAGE=OFF
    -DGMX_LOAD_PLUGINS=OFF
)
if [ "$VARIANT" = mpi ]; then
    # PLUMED must speak MPI too: GROMACS hands it MPI communicators (-multidir, domain decomposition)
    plumed_cmd config has mpi >/dev/null 2>&1 || {
        echo "error: --mpi needs a PLUMED built with MPI ($PLUMED_EXE says 'mpi off'); configure PLUMED with" \
             "CXX=mpicxx (Debian: libopenmpi-dev) and pass its prefix with --plumed (and --kernel)" >&2; exit 1; }
    CMAKE_OPTS+=(-DGMX_MPI=ON -DGMX_THREAD_MPI=OFF)
else
    CMAKE_OPTS+=(-DGMX_MPI=OFF -DGMX_THREAD_MPI=ON)
fi
SRC_SETTINGS="gromacs=$GMX_VERSION variant=$VARIANT cmake=${CMAKE_OPTS[*]}"
PATCH_SETTINGS="plumed=$PLUMED_PREFIX ($PLUMED_EXE_VERSION) patch=runtime"
SETTINGS="$SRC_SETTINGS $PATCH_SETTINGS"
STAMP=$PREFIX/.stamp-$VARIANT

write_env() {
    local env=$PREFIX/env.sh tmp
    tmp=$(mktemp "$PREFIX/.env.sh.XXXXXX")
    {
        echo "# Written by scripts/build_gromacs_plumed.sh: PLUMED-patched GROMACS $GMX_VERSION (runtime mode)."
        echo "# source this file: GMX is the gmx command, PLUMED_KERNEL the PLUMED kernel mdrun -plumed loads."
        echo "export PATH=\"$PREFIX/bin\${PATH:+:\$PATH}\""
        if [ -x "$PREFIX/bin/gmx" ]; then echo "export GMX=\"$PREFIX/bin/gmx\""; fi
        if [ -x "$PREFIX/bin/gmx_mpi" ]; then echo "export GMX_MPI=\"$PREFIX/bin/gmx_mpi\""; fi
        if [ ! -x "$PREFIX/bin/gmx" ] && [ -x "$PREFIX/bin/gmx_mpi" ]; then echo "export GMX=\"$PREFIX/bin/gmx_mpi\""; fi
        echo "export PLUMED_KERNEL=\"$RUN_KERNEL\""
    } > "$tmp"
    mv -f "$tmp" "$env"
    echo "wrote $env:"
    sed 's/^/    /' "$env"
}

if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ -x "$PREFIX/bin/$GMX_BIN" ] \
        && [ "$(head -n 1 "$STAMP")" = "$SETTINGS" ]; then
    echo "GROMACS $GMX_VERSION + PLUMED ($VARIANT) already built in $PREFIX (FORCE=1 rebuilds)"
    if [ "$CHECK" = 0 ]; then write_env; fi
    exit 0
fi
if [ "$CHECK" = 1 ]; then echo "GROMACS $GMX_VERSION + PLUMED ($VARIANT) not built in $PREFIX with these settings"; exit 3; fi

# ---------------------------------------------------------------- build dependencies
need_pkgs=(cmake g++ make libfftw3-dev pkg-config)
if [ "$VARIANT" = mpi ]; then need_pkgs+=(libopenmpi-dev openmpi-bin); fi
missing=()
for p in "${need_pkgs[@]}"; do
    grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing build dependencies: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "error: missing build dependencies: ${missing[*]} (apt-get install them)" >&2; exit 1
    fi
fi

# ---------------------------------------------------------------- the source
mkdir -p "$SRC_CACHE"
TARBALL=${GROMACS_TARBALL:-$SRC_CACHE/gromacs_$GMX_VERSION.orig.tar.gz}
if [ ! -f "$TARBALL" ]; then
    [ -z "${GROMACS_TARBALL:-}" ] || { echo "error: GROMACS_TARBALL=$TARBALL is not a file" >&2; exit 1; }
    if ! grep -q "^Version: $GMX_VERSION-" <<<"$(apt-cache showsrc gromacs 2>/dev/null)"; then
        if [ "$(id -u)" = 0 ] && [ -d /etc/apt/sources.list.d ]; then
            echo "adding a deb-src entry for Debian bookworm (/etc/apt/sources.list.d/debian-src.sources)"
            cat > /etc/apt/sources.list.d/debian-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            apt-get update -q
        fi
        grep -q "^Version: $GMX_VERSION-" <<<"$(apt-cache showsrc gromacs 2>/dev/null)" || {
            echo "error: apt has no source package gromacs $GMX_VERSION (needs a bookworm deb-src line;" \
                 "or set GROMACS_TARBALL to gromacs-$GMX_VERSION.tar.gz)" >&2; exit 1; }
    fi
    (cd "$SRC_CACHE" && apt-get source -q --download-only "gromacs=$(apt-cache showsrc gromacs | \
        sed -n "s/^Version: \($GMX_VERSION-.*\)/\1/p" | head -n 1)")
    [ -f "$TARBALL" ] || { echo "error: apt-get source did not leave $TARBALL" >&2; exit 1; }
fi
echo "GROMACS source: $TARBALL"

# ---------------------------------------------------------------- extract + patch (once per build folder)
SRC=$BUILD_ROOT/gromacs-$GMX_VERSION
# .patched: line 1 the source and cmake settings, line 2 the PLUMED that patched the tree. Another
# PLUMED (same GROMACS settings) is patched in place: in runtime mode only the patched files and
# the link step are rebuilt, not the whole of GROMACS.
PATCHED=$BUILD_ROOT/.patched
if [ "${FORCE:-0}" = 1 ] || [ ! -f "$PATCHED" ] || [ "$(sed -n 1p "$PATCHED")" != "$SRC_SETTINGS" ]; then
    rm -rf "$BUILD_ROOT"
    mkdir -p "$BUILD_ROOT"
    tar -xzf "$TARBALL" -C "$BUILD_ROOT"
    [ -f "$SRC/CMakeLists.txt" ] || { echo "error: $TARBALL did not unpack to gromacs-$GMX_VERSION/" >&2; exit 1; }
    (cd "$SRC" && plumed_cmd patch -p -e "gromacs-$GMX_VERSION" --runtime)
    printf '%s\n%s\n' "$SRC_SETTINGS" "$PATCH_SETTINGS" > "$PATCHED"
elif [ "$(sed -n 2p "$PATCHED")" != "$PATCH_SETTINGS" ]; then
    echo "re-patching $SRC with $PLUMED_PREFIX (was: $(sed -n 2p "$PATCHED"))"
    (cd "$SRC" && plumed_cmd patch -R -e "gromacs-$GMX_VERSION" && plumed_cmd patch -p -e "gromacs-$GMX_VERSION" --runtime)
    printf '%s\n%s\n' "$SRC_SETTINGS" "$PATCH_SETTINGS" > "$PATCHED"
fi
grep -q "PLUMED" "$SRC/src/gromacs/mdrun/md.cpp" || { echo "error: plumed patch did not patch md.cpp" >&2; exit 1; }

# ---------------------------------------------------------------- configure, build, install
mkdir -p "$BUILD_ROOT/build"
cd "$BUILD_ROOT/build"
if [ ! -f CMakeCache.txt ]; then
    "$CMAKE" "$SRC" "${CMAKE_OPTS[@]}"
fi
start=$(date +%s)
make -j"$JOBS"
make install
echo "make + install: $(( $(date +%s) - start )) s with JOBS=$JOBS"

[ -x "$PREFIX/bin/$GMX_BIN" ] || { echo "error: $PREFIX/bin/$GMX_BIN was not installed" >&2; exit 1; }
# (the output first, then grep: with pipefail, grep -q closing the pipe early would fail a pipeline)
if ! grep -q -- "-plumed" <<<"$(PLUMED_KERNEL=$KERNEL "$PREFIX/bin/$GMX_BIN" mdrun -h 2>&1)"; then
    echo "error: $PREFIX/bin/$GMX_BIN mdrun has no -plumed option: the PLUMED patch did not take" >&2; exit 1
fi
echo "$SETTINGS" > "$STAMP"
if [ "${CLEAN:-0}" = 1 ]; then rm -rf "$BUILD_ROOT"; fi
echo "GROMACS $GMX_VERSION + PLUMED ($VARIANT): $PREFIX/bin/$GMX_BIN"
write_env
echo
echo "source $PREFIX/env.sh"
