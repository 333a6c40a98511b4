from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
FLOAT_CKPT = REPO / "checkpoints" / "ucm_float.pt"


def run_relax(mod, *args: np.ndarray) -> np.ndarray:
    """`main` of a Relax module run by TVM's Relax VM on this host (PrimFuncs a rewrite added get symbols of
    their own names)."""
    import tvm
    from tvm import relax

    mod = tvm.IRModule({gv: f.with_attr("global_symbol", gv.name_hint) if isinstance(f, tvm.tirx.PrimFunc) else f
                        for gv, f in mod.functions.items()})
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(a) for a in args)).numpy()


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
