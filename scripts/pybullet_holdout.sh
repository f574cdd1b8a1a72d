#!/usr/bin/env bash
# A second held-out set from another source than the training data and the Red Eclipse test split:
# the nine everyday objects of the pybullet 3.2.7 wheel's pybullet_data (zlib licence): duck,
# soccer ball, bunny, Lego brick (Y up), domino, Jenga block, mug, table block, tray (Z up).
# Downloads the wheel from PyPI (103 MB, no install), copies the meshes with their textures into
# two folders by up axis and renders them into DATASET at 128² with ground-truth meshes, all in the
# val split (a dataset of its own, never trained on):
#
#   bash scripts/pybullet_holdout.sh data/pybullet-128
#   lrm evaluate --data data/pybullet-128 --split val --ring-views 8 --image-size 128 --shuffle -o reports/pybullet
#
# Env: PY (default .venv/bin/python, then python3).
set -euo pipefail
out=${1:?usage: bash scripts/pybullet_holdout.sh DATASET}
py=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# any wheel carries the same pybullet_data: fetch the CPython 3.11 Linux one whatever runs here
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    pybullet==3.2.7 -d "$work" >/dev/null
unzip -q "$work"/pybullet-3.2.7-*.whl 'pybullet_data/*' -d "$work"
src=$work/pybullet_data
mkdir -p "$work/y/lego" "$work/z/mug" "$work/z/tray"
cp "$src"/duck.obj "$src"/duck.mtl "$src"/duckCM.png "$src"/soccerball.obj "$src"/soccerball.mtl \
   "$src"/colors16.png "$src"/bunny.obj "$work/y/"
cp "$src"/lego/lego.obj "$work/y/lego/"
for d in jenga domino table; do mkdir -p "$work/z/$d" && cp "$src/$d"/*.obj "$src/$d"/*.mtl "$src/$d"/*.[pj][np]g "$work/z/$d/"; done
cp "$src"/objects/mug.obj "$work/z/mug/"
cp "$src"/tray/tray_textured2.obj "$src"/tray/tray_textured2.mtl "$src"/tray/tray.jpg "$work/z/tray/"
for up in y z; do
    "$py" -m lrm data render "$work/$up" -o "$out" --up "$up" --resolution 128 --workers 2 --val-fraction 1 \
        --license Zlib --save-mesh all --quiet
done
