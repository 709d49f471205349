"""Turn the real CIFAR-10 images in ``../shared/data/cifar10`` into an ``npz:`` dataset.

The shared folder holds only the 50,000 CIFAR-10 *training* images. Following
its README, the last 5,000 (in the original order) become the local test
split and the first 45,000 the training source; tfq's split rule then carves
``val`` (10%) and ``calib`` from those 45,000. Nothing here is ever tuned on the
local test split.

    python -m benchmarks.prepare_shared_cifar10 --out ~/.cache/tfq/cifar10_shared.npz
    python -m pipelines.train --model resnet18 --dataset npz:$HOME/.cache/tfq/cifar10_shared.npz
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_OUT = Path.home() / ".cache" / "tfq" / "cifar10_shared.npz"
TEST_SIZE = 5000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prepare_shared_cifar10", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=str(DEFAULT_SHARED), help="the shared data folder (default: ../shared/data)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output .npz (default: {DEFAULT_OUT})")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from tfq.data import save_npz

    src = Path(args.shared) / "cifar10"
    parts = [src / f"train_images_part{i}.npy" for i in range(4)]
    missing = [str(p) for p in parts + [src / "train_labels.npy"] if not p.is_file()]
    if missing:
        print(f"error: missing {', '.join(missing)} (see shared/data/README.md)", file=sys.stderr)
        return 2
    out = Path(os.path.expanduser(args.out))
    if out.exists() and not args.overwrite:
        print(f"{out} exists; reusing it (--overwrite to rebuild)")
        return 0
    x = np.concatenate([np.load(p, mmap_mode="r") for p in parts])
    y = np.load(src / "train_labels.npy").astype(np.int64)
    if x.shape != (50000, 32, 32, 3) or y.shape != (50000,):
        print(f"error: unexpected shapes {x.shape} {y.shape}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, x[:-TEST_SIZE], y[:-TEST_SIZE], x_test=x[-TEST_SIZE:], y_test=y[-TEST_SIZE:],
             class_names=CIFAR10_CLASSES, overwrite=args.overwrite)
    print(f"wrote {out}: train source {len(x) - TEST_SIZE}, local test {TEST_SIZE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
