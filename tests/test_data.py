import numpy as np
import pytest
import torch
from conftest import write_pair
from PIL import Image

from ucm.data import DataError, JointAugment, load_pair, load_tensors
from ucm.pairs import find_pairs


def test_isic_flat_and_split_folders(tmp_path):
    for i in range(3):
        write_pair(tmp_path / "flat" / f"ISIC_000000{i}.jpg", tmp_path / "flat" / f"ISIC_000000{i}_segmentation.png", seed=i)
        write_pair(
            tmp_path / "official" / "ISIC2018_Task1-2_Training_Input" / f"ISIC_000000{i}.jpg",
            tmp_path / "official" / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_000000{i}_segmentation.png",
            seed=i,
        )
    for sub in ("flat", "official"):
        pairs = find_pairs(tmp_path / sub)
        assert [p.id for p in pairs] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
        assert all(p.mask.name == f"{p.id}_segmentation.png" for p in pairs)


def test_ham10000_masks_named_like_images(tmp_path):
    write_pair(tmp_path / "images" / "ISIC_0024311.jpg", tmp_path / "masks" / "ISIC_0024311.png")
    write_pair(tmp_path / "images" / "ISIC_0027001.jpg", tmp_path / "masks" / "ISIC_0027001_segmentation.png")
    pairs = find_pairs(tmp_path)
    assert [p.mask.name for p in pairs] == ["ISIC_0024311.png", "ISIC_0027001_segmentation.png"]


def test_ph2_flat_and_nested(tmp_path):
    write_pair(tmp_path / "flat" / "IMD002.bmp", tmp_path / "flat" / "IMD002_lesion.bmp")
    nested = tmp_path / "nested" / "PH2 Dataset images" / "IMD003"
    write_pair(nested / "IMD003_Dermoscopic_Image" / "IMD003.bmp", nested / "IMD003_lesion" / "IMD003_lesion.bmp")
    write_pair(nested / "IMD003_roi" / "IMD003_R1_Label4.bmp", nested / "IMD003_roi" / "unused.bmp")
    assert [p.id for p in find_pairs(tmp_path / "flat", layout="ph2")] == ["IMD002"]
    assert [p.id for p in find_pairs(tmp_path / "nested")] == ["IMD003"]


def test_generic_layout_with_mask_pattern(tmp_path):
    write_pair(tmp_path / "images" / "case1.png", tmp_path / "masks" / "case1_mask.png")
    pairs = find_pairs(tmp_path, layout="generic", mask_pattern="{stem}_mask.png")
    assert [(p.id, p.mask.name) for p in pairs] == [("case1", "case1_mask.png")]


def test_split_csv(tmp_path):
    for i in range(4):
        write_pair(tmp_path / "images" / f"ISIC_000000{i}.jpg", tmp_path / "masks" / f"ISIC_000000{i}_segmentation.png", seed=i)
    csv = tmp_path / "pairs.csv"
    csv.write_text("image_id,source_repo_split\nISIC_0000000,train\nISIC_0000001,val\nISIC_0000002,train\nISIC_0000003,test\n")
    assert [p.id for p in find_pairs(tmp_path, split_csv=csv, split="train")] == ["ISIC_0000000", "ISIC_0000002"]
    assert [p.id for p in find_pairs(tmp_path, split_csv=csv, split="val")] == ["ISIC_0000001"]
    with pytest.raises(DataError, match="values present"):
        find_pairs(tmp_path, split_csv=csv, split="nope")
    csv.write_text("image_id,source_repo_split\nISIC_0000009,train\n")
    with pytest.raises(DataError, match="no image/mask pair"):
        find_pairs(tmp_path, split_csv=csv, split="train")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="no such data folder"):
        find_pairs(tmp_path / "missing")


def test_image_without_mask_names_the_file(tmp_path):
    write_pair(tmp_path / "images" / "ISIC_0000001.jpg", tmp_path / "masks" / "ISIC_0000001_segmentation.png")
    write_pair(tmp_path / "images" / "ISIC_0000002.jpg", tmp_path / "elsewhere" / "x.png")
    with pytest.raises(DataError, match=r"ISIC_0000002\.jpg: no mask found"):
        find_pairs(tmp_path)


def test_corrupt_image_names_the_file(tmp_path):
    write_pair(tmp_path / "ISIC_0000001.jpg", tmp_path / "ISIC_0000001_segmentation.png")
    data = (tmp_path / "ISIC_0000001.jpg").read_bytes()
    (tmp_path / "ISIC_0000001.jpg").write_bytes(data[: len(data) // 3])
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg: cannot decode"):
        load_pair(pair, 32)
    (tmp_path / "ISIC_0000001.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg: cannot decode"):
        load_pair(pair, 32)


def test_mask_of_other_size(tmp_path):
    write_pair(tmp_path / "ISIC_0000001.jpg", tmp_path / "ISIC_0000001_segmentation.png", size=(40, 32))
    Image.new("L", (20, 16)).save(tmp_path / "ISIC_0000001_segmentation.png")
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match=r"ISIC_0000001_segmentation\.png: mask is 20x16 but its image .* is 40x32"):
        load_pair(pair, 32)


@pytest.mark.parametrize("mode", ["L", "I;16", "I", "F", "CMYK"])
def test_non_rgb_images_are_refused(tmp_path, mode):
    write_pair(tmp_path / "ISIC_0000001.png", tmp_path / "masks" / "ISIC_0000001_segmentation.png")
    img = Image.new(mode, (40, 32))
    img.save(tmp_path / ("ISIC_0000001.tiff" if mode in ("F", "CMYK", "I") else "ISIC_0000001.png"))
    if mode in ("F", "CMYK", "I"):
        (tmp_path / "ISIC_0000001.png").unlink()
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match=f"image mode '{mode}' is not 8-bit RGB"):
        load_pair(pair, 32)


def test_rgba_and_palette_images_convert_to_rgb(tmp_path):
    write_pair(tmp_path / "ISIC_0000001.png", tmp_path / "masks" / "ISIC_0000001_segmentation.png")
    rgb = np.asarray(Image.open(tmp_path / "ISIC_0000001.png"))
    Image.open(tmp_path / "ISIC_0000001.png").convert("RGBA").save(tmp_path / "ISIC_0000001.png")
    (pair,) = find_pairs(tmp_path)
    image, mask = load_pair(pair, None)
    np.testing.assert_array_equal(image, rgb)
    assert mask.dtype == bool and mask.sum() == 16 * 20


def test_colour_or_16bit_masks_are_refused(tmp_path):
    write_pair(tmp_path / "ISIC_0000001.jpg", tmp_path / "ISIC_0000001_segmentation.png")
    Image.new("RGB", (40, 32), (0, 128, 255)).save(tmp_path / "ISIC_0000001_segmentation.png")
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match="mask mode 'RGB' has real colour"):
        load_pair(pair, 32)
    Image.new("I;16", (40, 32)).save(tmp_path / "ISIC_0000001_segmentation.png")
    with pytest.raises(DataError, match="mask mode 'I;16'"):
        load_pair(pair, 32)


def test_resize_scaling_and_threshold(tiny_isic):
    data = load_tensors(find_pairs(tiny_isic)[:2], 64, progress=False)
    assert data.images.shape == (2, 3, 64, 64) and data.images.dtype == torch.uint8
    assert set(data.masks.unique().tolist()) <= {0, 1}
    images, masks = data.batch(torch.tensor([0, 1]), "cpu")
    assert images.dtype == torch.float32 and 0.0 <= images.min() and images.max() <= 1.0


def test_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    masks = torch.zeros(16, 1, 64, 64)
    masks[:, :, 8:30, 12:50] = 1
    images = masks.repeat(1, 3, 1, 1)  # the image is the mask: any misalignment shows
    out_images, out_masks = JointAugment()(images, masks)
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out_masks, masks)  # something was flipped or rotated
    agreement = ((out_images[:, 0] > 0.5) == out_masks[:, 0].bool()).float().mean()
    assert agreement > 0.99


def _ph2_nested(root, stem="IMD004"):
    """PH2's own layout: IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp + IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp,
    the mask a 24-bit RGB BMP with three equal channels (as PH2 ships it)."""
    case = root / "PH2Dataset" / "PH2 Dataset images" / stem
    image, mask = case / f"{stem}_Dermoscopic_Image" / f"{stem}.bmp", case / f"{stem}_lesion" / f"{stem}_lesion.bmp"
    write_pair(image, mask)
    Image.open(mask).convert("RGB").save(mask)
    return image, mask


def test_ph2_nested_rgb_masks_load_as_grayscale(tmp_path):
    _, mask = _ph2_nested(tmp_path)
    assert Image.open(mask).mode == "RGB"
    (pair,) = find_pairs(tmp_path)
    image, loaded = load_pair(pair, None)
    assert image.shape == (32, 40, 3) and loaded.dtype == bool and loaded.sum() == 16 * 20


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA"])
def test_grey_masks_in_other_modes_load(tmp_path, mode):
    write_pair(tmp_path / "ISIC_0000001.jpg", tmp_path / "ISIC_0000001_segmentation.png")
    mask_path = tmp_path / "ISIC_0000001_segmentation.png"
    Image.open(mask_path).convert(mode).save(mask_path)
    (pair,) = find_pairs(tmp_path)
    assert load_pair(pair, None)[1].sum() == 16 * 20


def test_colour_mask_in_ph2_layout_names_the_file(tmp_path):
    _, mask = _ph2_nested(tmp_path)
    rgb = np.asarray(Image.open(mask)).copy()
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(mask)
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match=r"IMD004_lesion\.bmp: mask mode 'RGB' has real colour"):
        load_pair(pair, None)


def test_mask_without_image_is_an_error(tmp_path):
    write_pair(tmp_path / "images" / "ISIC_0000001.jpg", tmp_path / "masks" / "ISIC_0000001_segmentation.png")
    write_pair(tmp_path / "images" / "ISIC_0000002.jpg", tmp_path / "masks" / "ISIC_0000002_segmentation.png")
    (tmp_path / "images" / "ISIC_0000002.jpg").unlink()
    (tmp_path / "masks" / "ISIC_0000003_superpixels.png").write_bytes(b"")  # ISIC 2017 ships these: not masks
    with pytest.raises(DataError, match=r"ISIC_0000002_segmentation\.png: a mask without its image"):
        find_pairs(tmp_path)
    _, mask = _ph2_nested(tmp_path / "ph2", "IMD010")
    _ph2_nested(tmp_path / "ph2", "IMD011")[0].unlink()
    with pytest.raises(DataError, match=r"IMD011_lesion\.bmp: a mask without its image"):
        find_pairs(tmp_path / "ph2")
    write_pair(tmp_path / "gen" / "images" / "a.png", tmp_path / "gen" / "masks" / "a.png")
    write_pair(tmp_path / "gen" / "elsewhere" / "b.png", tmp_path / "gen" / "masks" / "b.png")
    with pytest.raises(DataError, match=r"masks/b\.png: a mask without its image"):
        find_pairs(tmp_path / "gen", layout="generic")


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    write_pair(tmp_path / "ISIC_0000001.jpg", tmp_path / "ISIC_0000001_segmentation.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 40x32 = 1280 pixels is over twice the limit
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg: refusing to decode: .*decompression bomb"):
        load_pair(pair, None)
