#!/usr/bin/env python3
"""Makes the transform fixture of the `datasets` crate's tests.

Applies torchvision's functional transforms (PIL path: the one the original DETR uses) to a small
known image and records the results:

    datasets/tests/fixtures/transforms/input.png        the known image (61x43, RGB)
    datasets/tests/fixtures/transforms/<case>.png       transformed images (8-bit, exact)
    datasets/tests/fixtures/transforms/normalized.bin   F.normalize(F.to_tensor(input)), f32 LE
    datasets/tests/fixtures/transforms/expected.json    boxes, sizes, areas per case

Box arithmetic is done in float32 torch tensors with the formulas of DETR's
datasets/transforms.py (written out here). Run from the repository root:

    python tools/make_transform_fixture.py

Needs torch, torchvision and Pillow; the Rust tests only read the committed outputs.
"""
import json
import math
import os

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image

OUT = os.path.join("datasets", "tests", "fixtures", "transforms")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def known_image(w=61, h=43):
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1)).astype(np.uint8)
    g = (y * 255 // (h - 1)).astype(np.uint8)
    b = ((((x // 5) + (y // 4)) % 2) * 180 + (x * y) % 37).astype(np.uint8)
    img = np.stack([r, g, b], axis=-1)
    img[10:20, 30:45] = [250, 20, 90]  # a sharp block
    return Image.fromarray(img, "RGB")


BOXES = torch.tensor(
    [
        [5.0, 4.0, 20.5, 30.25],
        [30.0, 10.0, 45.0, 20.0],
        [0.0, 0.0, 61.0, 43.0],
        [50.5, 35.0, 60.0, 42.0],
        [2.0, 38.0, 12.0, 43.0],
    ],
    dtype=torch.float32,
)
LABELS = [1, 2, 3, 4, 5]
AREA = torch.tensor([100.0, 150.0, 2623.0, 50.0, 40.0], dtype=torch.float32)


def size_rule(w, h, size, max_size):
    """The original's shorter-side rule with its longest-side cap."""
    if max_size is not None:
        mn, mx = float(min(w, h)), float(max(w, h))
        if mx / mn * size > max_size:
            size = int(round(max_size * mn / mx))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def do_resize(img, boxes, area, h, w):
    out = F.resize(img, [h, w])  # PIL image -> PIL bilinear
    rw = float(out.size[0]) / float(img.size[0])
    rh = float(out.size[1]) / float(img.size[1])
    boxes = boxes * torch.as_tensor([rw, rh, rw, rh])
    area = area * (rw * rh)
    return out, boxes, area


def do_hflip(img, boxes):
    w = img.size[0]
    flipped = F.hflip(img)
    boxes = boxes[:, [2, 1, 0, 3]] * torch.as_tensor([-1, 1, -1, 1]) + torch.as_tensor([w, 0, w, 0])
    return flipped, boxes


def do_crop(img, boxes, labels, top, left, h, w):
    out = F.crop(img, top, left, h, w)
    c = boxes - torch.as_tensor([left, top, left, top])
    c = torch.min(c.reshape(-1, 2, 2), torch.as_tensor([w, h], dtype=torch.float32)).clamp(min=0)
    area = (c[:, 1, :] - c[:, 0, :]).prod(dim=1)
    keep = torch.all(c[:, 1, :] > c[:, 0, :], dim=1)
    return out, c.reshape(-1, 4)[keep], area[keep], [l for l, k in zip(labels, keep) if k]


def to_cxcywh_norm(boxes, w, h):
    x0, y0, x1, y1 = boxes.unbind(-1)
    b = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0), (y1 - y0)], dim=-1)
    return b / torch.tensor([w, h, w, h], dtype=torch.float32)


def lst(t):
    return [[float(v) for v in row] for row in t.tolist()] if t.dim() == 2 else [float(v) for v in t.tolist()]


def main():
    os.makedirs(OUT, exist_ok=True)
    img = known_image()
    img.save(os.path.join(OUT, "input.png"))
    cases = {}

    for name, (h, w) in {
        "resize_down": (30, 40),
        "resize_up": (100, 137),
        "resize_aniso": (20, 90),
        "resize_vertical_only": (17, 61),
        "resize_horizontal_only": (43, 23),
        "resize_big_down": (7, 9),
        "resize_down_vertical_first": (20, 59),
        "resize_down_horizontal_first": (35, 50),
        "resize_uniform_up": (86, 122),
        "resize_uniform_down": (21, 30),
    }.items():
        out, b, a = do_resize(img, BOXES, AREA, h, w)
        out.save(os.path.join(OUT, name + ".png"))
        cases[name] = {"size": [h, w], "boxes": lst(b), "area": lst(a)}

    out, b = do_hflip(img, BOXES)
    out.save(os.path.join(OUT, "hflip.png"))
    cases["hflip"] = {"boxes": lst(b)}

    out, b, a, l = do_crop(img, BOXES, LABELS, 8, 25, 30, 30)
    out.save(os.path.join(OUT, "crop.png"))
    cases["crop"] = {"region": [8, 25, 30, 30], "boxes": lst(b), "area": lst(a), "labels": l}

    t = F.normalize(F.to_tensor(img), MEAN, STD)
    t.numpy().astype("<f4").tofile(os.path.join(OUT, "normalized.bin"))
    cases["normalize"] = {"shape": list(t.shape), "boxes": lst(to_cxcywh_norm(BOXES, img.size[0], img.size[1]))}

    # A chain: shorter side 30 with the longer side capped at 50, crop, flip, normalise.
    h, w = size_rule(img.size[0], img.size[1], 30, 50)
    r, b, a = do_resize(img, BOXES, AREA, h, w)
    c, b, a, l = do_crop(r, b, LABELS, 3, 4, 20, 26)
    f, b = do_hflip(c, b)
    f.save(os.path.join(OUT, "chain.png"))
    t = F.normalize(F.to_tensor(f), MEAN, STD)
    t.numpy().astype("<f4").tofile(os.path.join(OUT, "chain_normalized.bin"))
    cases["chain"] = {
        "resize": [h, w],
        "crop": [3, 4, 20, 26],
        "boxes_cxcywh": lst(to_cxcywh_norm(b, f.size[0], f.size[1])),
        "labels": l,
        "shape": list(t.shape),
    }

    sizes = []
    for w, h, s, m in [
        (250, 830, 800, 1333), (830, 250, 800, 1333), (640, 480, 800, 1333), (480, 640, 800, 1333),
        (1000, 1000, 800, 1333), (500, 333, 800, 1333), (61, 43, 30, 50), (333, 500, 512, None),
        (1333, 800, 800, 1333), (427, 640, 608, 1333), (100, 33, 96, 267), (1, 1000, 800, 1333),
    ]:
        sizes.append({"w": w, "h": h, "size": s, "max_size": m, "out_hw": list(size_rule(w, h, s, m))})
    cases["size_rule"] = sizes

    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": Image.__version__,
        "boxes": lst(BOXES),
        "labels": LABELS,
        "area": lst(AREA),
        "mean": MEAN,
        "std": STD,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump({"meta": meta, "cases": cases}, fh, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
