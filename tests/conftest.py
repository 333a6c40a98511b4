from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
FLOAT_CKPT = REPO / "checkpoints" / "ucm_float.pt"


def write_pair(image_path: Path, mask_path: Path, size: tuple[int, int] = (40, 32), seed: int = 0) -> None:
    """A random RGB image and a mask with a filled rectangle (0/255)."""
    rng = np.random.default_rng(seed)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image_path)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    Image.fromarray(mask).save(mask_path)


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def tiny_isic(tmp_path: Path) -> Path:
    """Twelve sample pairs in the ISIC images/ + masks/ layout (a copy, safe to modify)."""
    root = tmp_path / "isic"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for image in sorted((SAMPLE / "images").glob("*.jpg"))[:12]:
        (root / "images" / image.name).write_bytes(image.read_bytes())
        mask = SAMPLE / "masks" / f"{image.stem}_segmentation.png"
        (root / "masks" / mask.name).write_bytes(mask.read_bytes())
    return root


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped int8 model compiled for every target (cross-built with the boards' GCC), once per session."""
    from compile.bundle import compile_bundle
    from compile.config import CompileConfig
    from compile.toolchains import TARGETS

    root = tmp_path_factory.mktemp("bundles")
    return {name: compile_bundle(CompileConfig(target=name, out=root / name)).dir for name in TARGETS}
