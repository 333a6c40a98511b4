"""Make the small demo/test sample shipped in `data/sample/` from a full data set.

    python -m ucm.sample --data ../shared/data/isic2018_komour --split-csv ../shared/data/isic2018_komour/pairs.csv \
        --split val --n 32 --size 256 --out data/sample

Picks `n` pairs spread evenly over the split (sorted by id), resizes them as training does (bilinear;
masks thresholded at 127) and writes ISIC-layout files: `images/<id>.jpg` (quality 95) and
`masks/<id>_segmentation.png` (0/255).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ucm.data import load_pair
from ucm.errors import run_command
from ucm.pairs import find_pairs


def make_sample(data: str, split_csv: str | None, split: str | None, n: int, size: int, out: Path) -> list[str]:
    pairs = find_pairs(data, split_csv=split_csv, split=split)
    step = max(1, len(pairs) // n)
    chosen = pairs[::step][:n]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for pair in chosen:
        image, mask = load_pair(pair, size)
        Image.fromarray(image).save(out / "images" / f"{pair.id}.jpg", quality=95)
        Image.fromarray(mask.astype("uint8") * 255).save(out / "masks" / f"{pair.id}_segmentation.png")
    return [p.id for p in chosen]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ucm.sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split-csv")
    ap.add_argument("--split")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="data/sample")
    args = ap.parse_args(argv)
    return run_command(lambda: _sample(args))


def _sample(args: argparse.Namespace) -> int:
    ids = make_sample(args.data, args.split_csv, args.split, args.n, args.size, Path(args.out))
    print(f"wrote {len(ids)} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
