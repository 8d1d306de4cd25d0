"""Single-threaded decode throughput of engine.imaging.load_image: images/s at full size and at
a reduced size (JPEGs decoded at 1/2, 1/4 or 1/8 scale in the DCT domain).

    python benchmarks/decode_throughput.py FOLDER_OR_FILES... [--min-short-side 256] [--repeat 3]

Figures: docs/image-inputs.md ("Decoding throughput").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.errors import ImageError  # noqa: E402
from engine.imaging import is_image_path, load_image  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/decode_throughput.py",
        description="Decode images single-threaded and print images/s, full size and reduced.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--min-short-side", type=int, default=256)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed passes per mode (median reported)"
    )
    args = parser.parse_args(argv)

    files: list[str] = []
    for p in args.paths:
        if os.path.isdir(p):
            for root, _dirs, names in os.walk(p):
                files.extend(os.path.join(root, n) for n in sorted(names) if is_image_path(n))
        else:
            files.append(p)
    if not files:
        parser.error("no image files found")
    cv2.setNumThreads(1)  # one decode per thread: the figure a worker thread gets
    for path in files:  # warm the OS file cache so both modes read from memory
        with open(path, "rb") as f:
            f.read()
    print(
        f"{len(files)} images, OpenCV {cv2.__version__}, 1 thread, median of {args.repeat} passes; "
        "images/s by wall clock and per CPU-second (less affected by other processes)"
    )
    for label, mss in (
        ("full decode", None),
        (f"min_short_side={args.min_short_side}", args.min_short_side),
    ):
        wall_rates, cpu_rates, failures, shapes = [], [], 0, []
        for _ in range(args.repeat):
            failures, shapes = 0, []
            wall, cpu = time.perf_counter(), time.process_time()
            for path in files:
                try:
                    shapes.append(load_image(path, min_short_side=mss).shape[:2])
                except ImageError:
                    failures += 1
            wall_rates.append(len(files) / (time.perf_counter() - wall))
            cpu_rates.append(len(files) / (time.process_time() - cpu))
        mean_short = statistics.fmean(min(s) for s in shapes) if shapes else 0
        print(
            f"{label:>22}: {statistics.median(wall_rates):6.1f} images/s wall, "
            f"{statistics.median(cpu_rates):6.1f} images/CPU-s "
            f"(mean short side {mean_short:.0f}, {failures} refused)"
        )


if __name__ == "__main__":
    main()
