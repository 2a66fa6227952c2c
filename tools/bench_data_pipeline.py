#!/usr/bin/env python3
"""Throughput of torchvision's CocoDetection with DETR's transforms, for comparison with
`cargo run --release -p datasets --example bench_pipeline` (which calls this script on the
same images when torch is installed).

    python tools/bench_data_pipeline.py --root DIR [--split train2017] [--batch 2] [--workers 1 2]

The transforms follow DETR's datasets/transforms.py (flip, multi-scale resize with the
longest-side cap or resize-crop-resize, ToTensor + Normalize; PIL path), written out here; the
collate pads to the batch's largest size and builds the padding mask like DETR's NestedTensor.
"""
import argparse
import os
import random
import sys
import time

try:
    import torch
    import torchvision
    import torchvision.transforms.functional as F
    from torch.utils.data import DataLoader
except ImportError as e:  # torch is optional
    print(f"torch/torchvision not installed ({e}); skipping the torchvision benchmark")
    sys.exit(0)


def size_rule(w, h, size, max_size):
    if max_size is not None:
        mn, mx = float(min(w, h)), float(max(w, h))
        if mx / mn * size > max_size:
            size = int(round(max_size * mn / mx))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize(img, t, size, max_size=None):
    h, w = size_rule(img.size[0], img.size[1], size, max_size)
    out = F.resize(img, [h, w])
    rw, rh = out.size[0] / img.size[0], out.size[1] / img.size[1]
    t = dict(t)
    t["boxes"] = t["boxes"] * torch.as_tensor([rw, rh, rw, rh])
    t["area"] = t["area"] * (rw * rh)
    t["size"] = torch.tensor([h, w])
    return out, t


def hflip(img, t):
    w = img.size[0]
    t = dict(t)
    b = t["boxes"]
    t["boxes"] = b[:, [2, 1, 0, 3]] * torch.as_tensor([-1, 1, -1, 1]) + torch.as_tensor([w, 0, w, 0])
    return F.hflip(img), t


def crop(img, t, i, j, h, w):
    out = F.crop(img, i, j, h, w)
    t = dict(t)
    c = t["boxes"] - torch.as_tensor([j, i, j, i])
    c = torch.min(c.reshape(-1, 2, 2), torch.as_tensor([w, h], dtype=torch.float32)).clamp(min=0)
    keep = torch.all(c[:, 1, :] > c[:, 0, :], dim=1)
    t["area"] = (c[:, 1, :] - c[:, 0, :]).prod(dim=1)[keep]
    t["boxes"] = c.reshape(-1, 4)[keep]
    t["labels"] = t["labels"][keep]
    t["size"] = torch.tensor([h, w])
    return out, t


SCALES = [480 + 32 * i for i in range(11)]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def detr_train(img, t):
    if random.random() < 0.5:
        img, t = hflip(img, t)
    if random.random() < 0.5:
        img, t = resize(img, t, random.choice(SCALES), 1333)
    else:
        img, t = resize(img, t, random.choice([400, 500, 600]))
        w = random.randint(384, min(img.width, 600))
        h = random.randint(384, min(img.height, 600))
        i = random.randint(0, img.height - h)
        j = random.randint(0, img.width - w)
        img, t = crop(img, t, i, j, h, w)
        img, t = resize(img, t, random.choice(SCALES), 1333)
    return normalize(img, t)


def detr_val(img, t):
    img, t = resize(img, t, 800, 1333)
    return normalize(img, t)


def normalize(img, t):
    x = F.normalize(F.to_tensor(img), MEAN, STD)
    h, w = x.shape[-2:]
    b = t["boxes"]
    b = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], -1)
    t = dict(t)
    t["boxes"] = b / torch.tensor([w, h, w, h], dtype=torch.float32)
    return x, t


class Detection(torchvision.datasets.CocoDetection):
    def __init__(self, root, ann, tf):
        super().__init__(root, ann)
        self.tf = tf

    def __getitem__(self, idx):
        img, anno = super().__getitem__(idx)
        w, h = img.size
        anno = [a for a in anno if a.get("iscrowd", 0) == 0]
        boxes = torch.as_tensor([a["bbox"] for a in anno], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=w)
        boxes[:, 1::2].clamp_(min=0, max=h)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        t = {
            "boxes": boxes[keep],
            "labels": torch.tensor([a["category_id"] for a in anno], dtype=torch.int64)[keep],
            "area": torch.tensor([a["area"] for a in anno], dtype=torch.float32)[keep],
            "image_id": torch.tensor([self.ids[idx]]),
            "size": torch.tensor([h, w]),
        }
        return self.tf(img, t)


def collate(batch):
    imgs, targets = zip(*batch)
    h = max(i.shape[1] for i in imgs)
    w = max(i.shape[2] for i in imgs)
    out = torch.zeros(len(imgs), 3, h, w)
    mask = torch.ones(len(imgs), h, w, dtype=torch.bool)
    for k, im in enumerate(imgs):
        out[k, :, : im.shape[1], : im.shape[2]].copy_(im)
        mask[k, : im.shape[1], : im.shape[2]] = False
    return out, mask, list(targets)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--split", default="train2017")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--transforms", default="train", choices=["train", "val"])
    a = p.parse_args()
    torch.set_num_threads(1)
    ann = os.path.join(a.root, "annotations", f"instances_{a.split}.json")
    ds = Detection(os.path.join(a.root, a.split), ann, detr_train if a.transforms == "train" else detr_val)
    print(f"torchvision {torchvision.__version__}: CocoDetection + DETR {a.transforms} transforms + padded batch, batch {a.batch}")
    for w in a.workers:
        random.seed(0)
        torch.manual_seed(0)
        dl = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=w, collate_fn=collate)
        t0 = time.perf_counter()
        n = 0
        for imgs, mask, targets in dl:
            n += imgs.shape[0]
        s = time.perf_counter() - t0
        print(f"  workers {w}: {n} images in {s:.2f}s = {n / s:.1f} images/s")


if __name__ == "__main__":
    main()
