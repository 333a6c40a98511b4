"""Finding skin-lesion image/mask pairs on disk, in the layouts data sets ship them.

Layouts (`find_pairs(root, layout=...)`; `auto` picks the first that matches):
- `isic`: ISIC 2016-2018 and HAM10000: images `ISIC_<id>.jpg`, masks `ISIC_<id>_segmentation.png`, in one
  folder or in separate folders anywhere under the root (e.g. `images/` + `masks/`, or the official
  `..._Training_Input/` + `..._GroundTruth/`). HAM10000 masks named `ISIC_<id>.png` are found in a folder
  whose name contains "mask", "groundtruth", "segmentation" or "lesion".
- `ph2`: PH2: `IMDxxx.bmp` + `IMDxxx_lesion.bmp`, flat or in PH2's own nested folders.
- `generic`: `images/` + `masks/` folders under the root, the mask of image `<stem>.<ext>` named by
  `mask_pattern` (default `{stem}.png`).

An image without its mask and a mask without its image raise `DataError` naming the file: nothing is skipped
silently. An optional CSV with an id column and a split column picks one split.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ucm.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_DIR_WORDS = ("mask", "groundtruth", "ground_truth", "segmentation", "lesion")
SPLIT_COLUMNS = ("split", "source_repo_split", "subset", "fold")
ID_COLUMNS = ("image_id", "id", "image", "name")


class DataError(UserError, ValueError):
    """A data problem the user must fix; the message names the file."""


@dataclass(frozen=True)
class Pair:
    id: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class Layout:
    name: str
    image_stem: re.Pattern
    mask_patterns: tuple[str, ...]
    needs_image_mask_dirs: bool = False


def _layouts(mask_pattern: str) -> dict[str, Layout]:
    return {
        "isic": Layout("isic", re.compile(r"^ISIC_\d+$"), ("{stem}_segmentation.png", "{stem}.png")),
        "ph2": Layout("ph2", re.compile(r"^IMD\d+$"), ("{stem}_lesion.bmp", "{stem}_lesion.png")),
        "generic": Layout("generic", re.compile(r"^.+$"), (mask_pattern,), needs_image_mask_dirs=True),
    }


LAYOUT_NAMES = ("auto", "isic", "ph2", "generic")


def _is_mask_dir(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts[:-1]
    return any(word in part.lower() for part in parts for word in MASK_DIR_WORDS)


def _scan(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _match_layout(root: Path, files: list[Path], layout: Layout) -> list[Pair] | None:
    """Pairs for `layout`, or None if no image of that layout is under root. Raises on an image without mask."""
    if layout.needs_image_mask_dirs:
        image_dir, mask_dir = root / "images", root / "masks"
        if not (image_dir.is_dir() and mask_dir.is_dir()):
            return None
        images = [p for p in files if p.parent == image_dir]
        masks_by_name = {p.name: p for p in files if p.parent == mask_dir}
    else:
        images = [p for p in files if layout.image_stem.match(p.stem) and not _is_mask_dir(p, root)]
        image_set = set(images)
        masks_by_name = {}
        for p in files:
            if p not in image_set:
                masks_by_name.setdefault(p.name, p)
    if not images:
        return None
    pairs = []
    for image in images:
        mask = next(
            (masks_by_name[n] for n in (pat.format(stem=image.stem) for pat in layout.mask_patterns) if n in masks_by_name),
            None,
        )
        if mask is None or mask == image:
            tried = ", ".join(pat.format(stem=image.stem) for pat in layout.mask_patterns)
            raise DataError(f"{image}: no mask found (layout '{layout.name}', looked for {tried} under {root})")
        pairs.append(Pair(image.stem, image, mask))
    _refuse_orphan_masks(layout, root, files, images, {p.mask for p in pairs}, masks_by_name)
    ids = [p.id for p in pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{root}: image ids appear more than once: {dup}")
    return pairs


def _mask_name_regex(layout: Layout) -> re.Pattern:
    """File names that are masks of this layout: a mask pattern around an image stem of the layout."""
    stem = layout.image_stem.pattern.removeprefix("^").removesuffix("$")
    alternatives = [re.escape(p).replace(re.escape("{stem}"), f"(?:{stem})") for p in layout.mask_patterns]
    return re.compile(f"^(?:{'|'.join(alternatives)})$")


def _refuse_orphan_masks(layout: Layout, root: Path, files: list[Path], images: list[Path], used: set[Path],
                         masks_by_name: dict[str, Path]) -> None:
    """A mask whose image is missing is an error (a lost image would silently shrink the data set)."""
    if layout.needs_image_mask_dirs:
        candidates = set(masks_by_name.values())
    else:
        is_mask = _mask_name_regex(layout).match
        image_set = set(images)
        candidates = {p for p in files if p not in image_set and is_mask(p.name)}
    orphans = sorted(candidates - used)
    duplicate = next((p for p in orphans if masks_by_name.get(p.name) in used), None)
    if duplicate is not None:
        raise DataError(f"{duplicate}: a second mask named like {masks_by_name[duplicate.name]}, which its image "
                        "uses; remove one of the two so that the pair is not ambiguous")
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise DataError(
            f"{orphans[0]}: a mask without its image{more} (layout '{layout.name}' under {root}); restore the "
            "image or remove the mask, so that no pair is skipped silently"
        )


def read_split_csv(csv_path: Path, split: str, split_column: str | None = None) -> set[str]:
    """Image ids of `split` in a CSV with an id column and a split column."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{csv_path}: the split CSV has no rows")
    columns = list(rows[0])
    id_col = next((c for c in ID_COLUMNS if c in columns), None)
    split_col = split_column or next((c for c in SPLIT_COLUMNS if c in columns), None)
    if id_col is None or split_col not in columns:
        raise DataError(
            f"{csv_path}: needs an id column (one of {ID_COLUMNS}) and a split column "
            f"({split_column or 'one of ' + str(SPLIT_COLUMNS)}); it has {columns}"
        )
    ids = {Path(r[id_col]).stem for r in rows if r[split_col] == split}
    if not ids:
        values = sorted({r[split_col] for r in rows})
        raise DataError(f"{csv_path}: no rows with {split_col} == '{split}'; values present: {values}")
    return ids


def find_pairs(
    root: str | Path,
    layout: str = "auto",
    mask_pattern: str = "{stem}.png",
    split_csv: str | Path | None = None,
    split: str | None = None,
    split_column: str | None = None,
) -> list[Pair]:
    """All image/mask pairs under `root` (sorted by id), optionally restricted to one split of a CSV."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    if layout not in LAYOUT_NAMES:
        raise DataError(f"unknown layout '{layout}'; choose one of {LAYOUT_NAMES}")
    files = _scan(root)
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder or below")
    layouts = _layouts(mask_pattern)
    candidates = list(layouts.values()) if layout == "auto" else [layouts[layout]]
    pairs = None
    for candidate in candidates:
        pairs = _match_layout(root, files, candidate)
        if pairs is not None:
            break
    if not pairs:
        raise DataError(
            f"{root}: no image/mask pairs found for layout '{layout}' "
            "(ISIC_<id>.jpg + ISIC_<id>_segmentation.png, IMDxxx.bmp + IMDxxx_lesion.bmp, "
            "or images/ + masks/ folders)"
        )
    if split_csv is not None:
        if split is None:
            raise DataError(f"{split_csv}: give --split (e.g. train or val) with --split-csv")
        wanted = read_split_csv(Path(split_csv), split, split_column)
        found = {p.id for p in pairs}
        missing = sorted(wanted - found)
        if missing:
            raise DataError(
                f"{split_csv}: {len(missing)} ids of split '{split}' have no image/mask pair under {root}, "
                f"e.g. {missing[:3]}"
            )
        pairs = [p for p in pairs if p.id in wanted]
    return sorted(pairs, key=lambda p: p.id)
