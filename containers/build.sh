#!/usr/bin/env bash
# Build the WikiGraph Apptainer image (on a login node or any machine with apptainer).
#   bash containers/build.sh [OUTPUT.sif]      default: containers/wikigraph.sif
# Unprivileged users build with --fakeroot (the site must map subuids; ask the admins if
# the build says "fakeroot: no mapping"). APPTAINER_TMPDIR/APPTAINER_CACHEDIR should point at
# a scratch filesystem with ~15 GB free: the CUDA base image is large.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$repo/containers/wikigraph.sif}")"

command -v apptainer >/dev/null || {
    echo "apptainer is not installed here; build on a login node that has it (module load apptainer)" >&2
    exit 1
}
flags=()
[[ $(id -u) -eq 0 ]] || flags+=(--fakeroot)

# %files paths in the definition are relative to the build's working directory.
cd "$repo"
apptainer build "${flags[@]}" --force "$out" containers/wikigraph.def
apptainer test "$out"
apptainer inspect --labels "$out"
echo "built $out; submit with: python jobs/submit.py ... executor=slurm container=$out"
