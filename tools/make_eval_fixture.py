#!/usr/bin/env python3
"""Reference for `detr-train --eval --resume <official .pth>`: a small COCO validation split
and the loss components and COCO numbers the original's `evaluate` gives on it.

Writes `detr-train/tests/fixtures/eval_pth/`:
* `val2017/*.png` and `annotations/instances_val2017.json`: two 120x90 images with three or
  four boxes each (categories 1..5);
* `expected.json`: the validation loss components of the `tiny_r18` fixture model
  (`detr-model/tests/fixtures/tiny_r18.pth`, official state-dict names) on that split, with
  the original's validation transform at `--image_scale 0.1` (shorter side 80, longer at most
  133), both images in one batch, once with the auxiliary losses and once without
  (`--no_aux_loss`); and the 12 COCO numbers of its detections by pycocotools.

The model is `tools/make_model_fixture.py`'s PyTorch DETR, the criterion
`tools/make_criterion_fixture.py`'s float64 reference (scipy's `linear_sum_assignment`), the
preprocessing `tools/make_infer_fixture.py`'s (PIL bilinear resize, ToTensor, ImageNet
normalisation). Not run by CI: the files are committed and `detr-train/tests/learner.rs` reads
them. Needs torch, scipy, numpy, pillow, pycocotools.

    python tools/make_eval_fixture.py
"""

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_criterion_fixture as mcf  # noqa: E402
import make_infer_fixture as mif  # noqa: E402
import make_model_fixture as mmf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "detr-model" / "tests" / "fixtures"
OUT = REPO / "detr-train" / "tests" / "fixtures" / "eval_pth"
SCALE = 0.1
VAL_SIZE = round(800 * SCALE)
MAX_SIZE = round(1333 * SCALE)
SIZE = (120, 90)  # width, height
MIN_GAP = 1e-3


def prepare(img):
    w, h = img.size
    oh, ow = mif.get_size_with_aspect_ratio(w, h, VAL_SIZE, MAX_SIZE)
    resized = img.resize((ow, oh), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(mif.MEAN)[:, None, None]
    std = torch.tensor(mif.STD)[:, None, None]
    return (t - mean) / std


def random_boxes(gen, count, w, h):
    out = []
    for _ in range(count):
        bw = float(gen.uniform(0.2, 0.6) * w)
        bh = float(gen.uniform(0.2, 0.6) * h)
        x = float(gen.uniform(0, w - bw))
        y = float(gen.uniform(0, h - bh))
        out.append([round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)])
    return out


def targets_of(anns, w, h):
    boxes = torch.tensor(
        [[(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h] for x, y, bw, bh in
         (a["bbox"] for a in anns)],
        dtype=torch.float32,
    )
    labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.long)
    return boxes, labels


def coco_stats(gt, detections):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dt = coco.loadRes(detections)
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def main():
    torch.set_default_dtype(torch.float32)
    cfg = json.loads((MODEL_DIR / "tiny_r18.json").read_text())
    model = mmf.DETR(cfg).eval()
    sd = torch.load(MODEL_DIR / "tiny_r18.pth", map_location="cpu")["model"]
    model.load_state_dict(sd, strict=True)
    num_classes = cfg["num_classes"]

    (OUT / "val2017").mkdir(parents=True, exist_ok=True)
    (OUT / "annotations").mkdir(parents=True, exist_ok=True)
    w, h = SIZE
    names = ["a.png", "b.png"]
    tensors = []
    for i, name in enumerate(names):
        mif.make_image(w, h, seed=31 + i).save(OUT / "val2017" / name)
        tensors.append(prepare(Image.open(OUT / "val2017" / name).convert("RGB")))
    x = torch.stack(tensors)
    mask = torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.bool)
    with torch.no_grad():
        out = model(x, mask)
    logits, boxes = out["logits"], out["boxes"]  # [layers, batch, queries, ...]

    # Boxes drawn until every matching is stable (float32 costs give the same indices).
    for seed in range(100):
        gen = np.random.default_rng(seed)
        anns, images = [], []
        for i, name in enumerate(names):
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
            for b in random_boxes(gen, 3 + i, w, h):
                anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                                 category_id=int(gen.integers(1, num_classes)),
                                 bbox=b, area=b[2] * b[3], iscrowd=0))
        targets = [targets_of([a for a in anns if a["image_id"] == i + 1], w, h)
                   for i in range(len(names))]
        with_aux = mcf.reference(logits, boxes, targets, num_classes)
        final = mcf.reference(logits[-1:], boxes[-1:], targets, num_classes)
        if min(with_aux[5], final[5]) >= MIN_GAP:
            break
    else:
        raise SystemExit("no stable matching found")
    gt = dict(images=images, annotations=anns,
              categories=[dict(id=c, name=f"class{c}") for c in range(1, num_classes)])
    (OUT / "annotations" / "instances_val2017.json").write_text(json.dumps(gt, indent=1))

    scores, labels, xyxy, _ = mif.postprocess(logits[-1], boxes[-1], [(h, w)] * len(names))
    detections = []
    for i in range(len(names)):
        for q in range(scores.shape[1]):
            x0, y0, x1, y1 = xyxy[i, q].tolist()
            detections.append(dict(image_id=i + 1, category_id=int(labels[i, q]),
                                   bbox=[x0, y0, x1 - x0, y1 - y0], score=float(scores[i, q])))
    stats = coco_stats(gt, detections)

    def values(losses):
        return {k: float(v) for k, v in losses.items()}

    expected = dict(
        note="tools/make_eval_fixture.py: the tiny_r18 fixture model on this split",
        image_scale=SCALE,
        batch_size=2,
        with_aux=values(with_aux[0]),
        no_aux=values(final[0]),
        coco_stats=stats,
        min_matching_gap=float(min(with_aux[5], final[5])),
    )
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1))
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
