"""Decoding image/mask pairs strictly, holding a data set in memory, and augmenting it.

Decoding rules (`load_pair`): images must be 8-bit RGB; RGBA is converted to RGB by dropping alpha and a
palette image is expanded to RGB (both unambiguous); grayscale, 16-bit, float and CMYK images are refused.
Masks must be 8-bit single channel (or 1-bit, or RGB / RGBA / palette with equal colour channels, read as
grayscale), the same size as their image; they are thresholded at 127. Anything unreadable and an image over
PIL's decompression-bomb limit raise `DataError` naming the file. Finding the pairs: `ucm.pairs`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from ucm.pairs import DataError, Pair, find_pairs


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as e:
        raise DataError(
            f"{path}: refusing to decode: {e} Downscale the file, or remove the pair if it is not a real image"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: cannot decode this image ({e}); re-export it or remove the pair") from e
    return img


def load_image(path: Path) -> Image.Image:
    """An 8-bit RGB image. RGBA drops alpha, palette expands to RGB; other modes are refused."""
    img = _open(path)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "P"):
        return img.convert("RGB")
    raise DataError(
        f"{path}: image mode '{img.mode}' is not 8-bit RGB (grayscale, 16-bit, float and CMYK images are refused; "
        "convert it to 8-bit RGB, or check that a mask did not land among the images)"
    )


def load_mask(path: Path) -> Image.Image:
    """An 8-bit single-channel mask. 1-bit is widened; RGB, RGBA, palette and LA masks whose colour channels are
    equal everywhere (PH2 ships 24-bit BMPs) are read as grayscale. Real colour or 16-bit masks are refused."""
    img = _open(path)
    if img.mode == "L":
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode == "LA":
        return img.getchannel("L")
    if img.mode in ("RGB", "RGBA", "P", "PA"):
        rgb = np.asarray(img.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return Image.fromarray(rgb[..., 0])
        raise DataError(
            f"{path}: mask mode '{img.mode}' has real colour (its red, green and blue differ); a mask must be "
            "grayscale 0/255: save it as 8-bit grayscale"
        )
    raise DataError(f"{path}: mask mode '{img.mode}' is not 8-bit single channel; save it as 8-bit grayscale 0/255")


def load_pair(pair: Pair, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], mask bool [H, W]), resized to size x size (aspect not kept) if size is given."""
    image, mask = load_image(pair.image), load_mask(pair.mask)
    if image.size != mask.size:
        raise DataError(
            f"{pair.mask}: mask is {mask.size[0]}x{mask.size[1]} but its image {pair.image} is "
            f"{image.size[0]}x{image.size[1]}; masks must match their image's size"
        )
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
        mask = mask.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(image, dtype=np.uint8), np.array(mask, dtype=np.uint8) > 127


@dataclass
class PairTensors:
    """A data set decoded into memory: images uint8 [N, 3, S, S], masks uint8 {0,1} [N, 1, S, S]."""

    ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> "PairTensors":
        return PairTensors(self.ids, self.images.to(device), self.masks.to(device))

    def batch(self, index: torch.Tensor, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and float {0, 1} masks on `device` for the given indices."""
        images = self.images[index].to(device, non_blocking=True).float().div_(255.0)
        masks = self.masks[index].to(device, non_blocking=True).float()
        return images, masks


def load_tensors(pairs: list[Pair], size: int, workers: int = 4, progress: bool = True, desc: str = "decode") -> PairTensors:
    """Decode and resize every pair into memory (1600 ISIC pairs at 256x256 take ~0.4 GB)."""
    if not pairs:
        raise DataError("no image/mask pairs to load")
    images = torch.empty(len(pairs), 3, size, size, dtype=torch.uint8)
    masks = torch.empty(len(pairs), 1, size, size, dtype=torch.uint8)

    def work(i: int) -> None:
        img, msk = load_pair(pairs[i], size)
        images[i] = torch.from_numpy(img).permute(2, 0, 1)
        masks[i, 0] = torch.from_numpy(msk)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(tqdm(pool.map(work, range(len(pairs))), total=len(pairs), desc=desc, disable=not progress, leave=False))
    return PairTensors([p.id for p in pairs], images, masks)


def load_images(root: str | Path, size: int, n: int | None = None) -> tuple[list[str], np.ndarray]:
    """Ids and uint8 RGB images [N, size, size, 3] (HWC, as a board's runner reads them) of the first `n` pairs
    under `root` (all when n is None)."""
    pairs = find_pairs(root)
    tensors = load_tensors(pairs[:n] if n else pairs, size, progress=False)
    return tensors.ids, tensors.images.permute(0, 2, 3, 1).contiguous().numpy()


class JointAugment(nn.Module):
    """The paper's augmentation, applied jointly to image and mask: h-flip, v-flip, rotation up to 180 degrees."""

    def __init__(self, rotation_degrees: float = 180.0, p: float = 0.5) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.aug = K.AugmentationSequential(
            K.RandomHorizontalFlip(p=p),
            K.RandomVerticalFlip(p=p),
            K.RandomRotation(degrees=rotation_degrees, p=p),
            data_keys=["input", "mask"],
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = self.aug(images, masks)
        return images, (masks > 0.5).float()
