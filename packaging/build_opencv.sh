#!/usr/bin/env bash
# Builds the OpenCV wheel the bundle ships: the same opencv-python-headless version as the build
# environment, compiled from its PyPI source distribution with only the modules Lookalike calls
# (core, imgproc, imgcodecs, features, geometry, flann and the Python bindings).
#
# Why: the PyPI wheel vendors FFmpeg and its video codecs, AVIF and an OpenBLAS for LAPACK,
# 93 MiB of libraries the app never loads, and its cv2 module is 79 MiB; the trimmed build is one
# 25 MiB module (stripped). Images decode, resize, convert and match bit for bit as with the
# wheel; warps differ by at most one grey level on a few pixels in 100,000 (the wheel's warps go
# through Intel IPP, which needs a download this build does not make). docs/packaging.md.
#
# Usage: packaging/build_opencv.sh PYTHON OUT_DIR  -> prints the wheel's path. The wheel is cached
# in OUT_DIR: about 10 minutes on 2 cores the first time, nothing after. Needs a C++ compiler,
# CMake and nasm (Debian: apt-get install build-essential cmake nasm).
set -euo pipefail
python=$1
out=$2
version=$("$python" -c 'from importlib.metadata import version; print(version("opencv-python-headless"))')
shopt -s nullglob
cached=("$out"/opencv_python_headless-"$version"-*.whl)
if (( ${#cached[@]} )); then
    echo "${cached[0]}"
    exit 0
fi
if ! command -v nasm >/dev/null; then
    # without it libjpeg-turbo builds without its SIMD code: JPEG decoding 15% slower
    echo "build_opencv: nasm not found (apt-get install nasm): libjpeg-turbo's SIMD code needs it" >&2
    exit 1
fi
mkdir -p "$out"
modules=core,imgproc,imgcodecs,features,geometry,flann,python3
# image codecs from OpenCV's own sources (linked in, as in the wheel); no video, GUI, LAPACK,
# OpenCL or IPP
off="FFMPEG GSTREAMER V4L LAPACK OPENEXR AVIF PROTOBUF ITT OPENCL EIGEN IPP HARFBUZZ FREETYPE"
args="-DBUILD_LIST=$modules -DBUILD_JPEG=ON -DBUILD_PNG=ON -DBUILD_ZLIB=ON -DBUILD_TIFF=ON"
args+=" -DBUILD_WEBP=ON -DBUILD_OPENJPEG=ON -DBUILD_OPENEXR=OFF -DBUILD_PROTOBUF=OFF"
for feature in $off; do args+=" -DWITH_$feature=OFF"; done
# (--no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS, it would hand back an older build)
echo "build_opencv: opencv-python-headless $version from source ($modules), ~10 min" >&2
ENABLE_HEADLESS=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS=$args \
    "$python" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary opencv-python-headless \
    "opencv-python-headless==$version" -w "$out" >&2
built=("$out"/opencv_python_headless-"$version"-*.whl)
echo "${built[0]}"
