#!/usr/bin/env python3
"""Generate the COCO bbox evaluation fixtures of `datasets/tests/coco_eval.rs`.

Each case is a folder under `datasets/tests/fixtures/coco_eval/<case>/` with

* `gt.json`       — COCO ground truth (images, annotations with `area`/`iscrowd`, categories),
* `dt.json`       — a COCO results list (`image_id`, `category_id`, `bbox` xywh, `score`),
* `expected.json` — what pycocotools' COCOeval (iouType "bbox": evaluate + accumulate +
                    summarize) computes: the 12 `stats`, per-category AP/AP50/AP75/AR100
                    (area "all", maxDets 100, mean over entries > -1 like `summarize`), the
                    `recall` array [T][K][A][M], and `img_ids` when the case restricts
                    `params.imgIds` (as DETR's own CocoEvaluator does).

The parameters (`iouThrs`, `recThrs`) are written to `params.json` so the Rust side can check
its `np.linspace` reproduction bit for bit.

Requirements: numpy, pycocotools (`pip install pycocotools`). CI never runs this script; the
outputs are committed. Run from the repository root:

    python3 tools/make_cocoeval_fixtures.py
"""

import contextlib
import io
import json
import os
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = os.path.join(os.path.dirname(__file__), "..", "datasets", "tests", "fixtures", "coco_eval")


def r2(x):
    """Round to 2 decimals, like COCO's own json (keeps the files small)."""
    return float(round(float(x), 2))


def make_image(i, w=640, h=480):
    return {"id": int(i), "file_name": f"{int(i):012d}.jpg", "width": w, "height": h}


def categories(ids):
    return [{"id": int(c), "name": f"cat{int(c)}", "supercategory": "thing"} for c in ids]


def ann(aid, img, cat, bbox, area=None, iscrowd=0):
    bbox = [r2(v) for v in bbox]
    if area is None:
        area = bbox[2] * bbox[3]
    return {
        "id": int(aid),
        "image_id": int(img),
        "category_id": int(cat),
        "bbox": bbox,
        "area": float(area),
        "iscrowd": int(iscrowd),
    }


def det(img, cat, bbox, score):
    return {
        "image_id": int(img),
        "category_id": int(cat),
        "bbox": [r2(v) for v in bbox],
        "score": float(score),
    }


def jitter(rng, bbox, s):
    x, y, w, h = bbox
    return [
        x + rng.normal(0, s) * w,
        y + rng.normal(0, s) * h,
        max(1.0, w * (1 + rng.normal(0, s))),
        max(1.0, h * (1 + rng.normal(0, s))),
    ]


def run_pycocotools(gt, dt, img_ids=None):
    """COCOeval bbox on in-memory dicts; returns the expected-values dict."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(dt)))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T,R,K,A,M]
    recall = ev.eval["recall"]  # [T,K,A,M]

    def mean_valid(s):
        s = s[s > -1]
        return -1.0 if len(s) == 0 else float(np.mean(s))

    per_category = {}
    for k, cat_id in enumerate(ev.params.catIds):
        per_category[str(int(cat_id))] = {
            "ap": mean_valid(precision[:, :, k, 0, 2]),
            "ap50": mean_valid(precision[0, :, k, 0, 2]),
            "ap75": mean_valid(precision[5, :, k, 0, 2]),
            "ar100": mean_valid(recall[:, k, 0, 2]),
        }
    out = {
        "stats": [float(v) for v in ev.stats],
        "per_category": per_category,
        "recall": recall.tolist(),
        "summary": sink.getvalue().splitlines()[-12:],
    }
    if img_ids is not None:
        out["img_ids"] = [int(i) for i in img_ids]
    return out


def write_case(name, gt, dt, img_ids=None, note="", files_from=None):
    """Writes one case; with `files_from`, reuses that case's gt.json/dt.json."""
    expected = run_pycocotools(gt, dt, img_ids)
    expected["note"] = note
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    if files_from is None:
        with open(os.path.join(d, "gt.json"), "w") as f:
            json.dump(gt, f, separators=(",", ":"))
        with open(os.path.join(d, "dt.json"), "w") as f:
            json.dump(dt, f, separators=(",", ":"))
    else:
        expected["files_from"] = files_from
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{name:12s} stats = {np.round(expected['stats'], 4).tolist()}")


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def case_crowd(rng):
    """Crowd regions: IoU = intersection / detection area, matched many times, ignored."""
    imgs = [make_image(i) for i in (1, 2, 3, 4)]
    anns, dts = [], []
    aid = 1
    for img in (1, 2, 3, 4):
        # A big crowd region with a few normal objects inside and outside it.
        anns.append(ann(aid, img, 1, [100, 100, 300, 200], area=40000, iscrowd=1)); aid += 1
        anns.append(ann(aid, img, 1, [120, 120, 50, 60], area=2500)); aid += 1
        anns.append(ann(aid, img, 1, [450, 300, 80, 90], area=6000)); aid += 1
        anns.append(ann(aid, img, 2, [10, 10, 40, 40], area=1500)); aid += 1
        anns.append(ann(aid, img, 2, [200, 150, 250, 150], area=30000, iscrowd=1)); aid += 1
        # Detections: several inside the crowd (all match it), near-duplicates, misses.
        for j in range(8):
            x = 110 + 30 * j
            dts.append(det(img, 1, [x, 110 + 10 * j, 40 + 5 * j, 40], rng.uniform(0.1, 0.9)))
        dts.append(det(img, 1, jitter(rng, [120, 120, 50, 60], 0.05), 0.95))
        dts.append(det(img, 1, jitter(rng, [120, 120, 50, 60], 0.05), 0.94))
        dts.append(det(img, 1, jitter(rng, [450, 300, 80, 90], 0.1), rng.uniform(0.3, 1.0)))
        dts.append(det(img, 1, [90, 90, 330, 230], 0.5))  # larger than the crowd region
        dts.append(det(img, 2, jitter(rng, [10, 10, 40, 40], 0.1), 0.8))
        for j in range(5):
            dts.append(det(img, 2, [210 + 40 * j, 160, 30, 30], rng.uniform(0, 1)))
    # An image whose only ground truth is crowd (npig contributions 0).
    imgs.append(make_image(5))
    anns.append(ann(aid, 5, 2, [0, 0, 600, 400], area=200000, iscrowd=1)); aid += 1
    dts.append(det(5, 2, [10, 10, 100, 100], 0.99))
    dts.append(det(5, 2, [500, 350, 200, 200], 0.98))
    # A category whose only ground truth is crowd everywhere: all -1.
    anns.append(ann(aid, 1, 3, [0, 0, 300, 300], area=50000, iscrowd=1)); aid += 1
    dts.append(det(1, 3, [10, 10, 50, 50], 0.7))
    gt = {"images": imgs, "annotations": anns, "categories": categories([1, 2, 3])}
    return gt, dts


def case_areas(rng):
    """All area ranges with GT areas exactly 32^2 and 96^2, and detection areas on them too."""
    imgs = [make_image(i, 1000, 1000) for i in range(1, 7)]
    anns, dts = [], []
    aid = 1
    sides = [8, 20, 31.99, 32, 32.01, 50, 95.99, 96, 96.01, 200, 400]
    for img in range(1, 7):
        for j, s in enumerate(sides):
            x, y = 10 + 80 * (j % 11), 10 + 150 * (j % 6)
            bbox = [x, y, s, s]
            # The GT `area` is what matters (exact boundary values), not the box.
            if s == 32:
                area = 1024.0
            elif s == 96:
                area = 9216.0
            else:
                area = float(s * s * rng.uniform(0.6, 1.0))
            cat = 1 + (j + img) % 3
            anns.append(ann(aid, img, cat, bbox, area=area)); aid += 1
            if rng.uniform() < 0.85:
                dts.append(det(img, cat, jitter(rng, bbox, 0.08), rng.uniform(0.2, 1.0)))
            if rng.uniform() < 0.4:
                dts.append(det(img, cat, jitter(rng, bbox, 0.3), rng.uniform(0.0, 0.6)))
        # Unmatched detections with areas exactly at the range bounds (w*h = 1024, 9216).
        dts.append(det(img, 1, [700, 700, 32, 32], 0.55))
        dts.append(det(img, 2, [700, 800, 96, 96], 0.45))
        dts.append(det(img, 3, [800, 700, 16, 64], 0.65))  # 1024 too
        dts.append(det(img, 3, [850, 850, 48, 192], 0.35))  # 9216 too
        dts.append(det(img, 1, [900, 100, 5, 5], 0.25))
    gt = {"images": imgs, "annotations": anns, "categories": categories([1, 2, 3])}
    return gt, dts


def case_empty(rng):
    """Categories without GT (with and without detections), images without detections or GT."""
    imgs = [make_image(i) for i in (10, 20, 30, 40, 50, 60)]
    anns, dts = [], []
    aid = 100
    for img in (10, 20, 30):
        for j in range(3):
            bbox = [50 + 150 * j, 60 + 20 * j, 60 + 10 * j, 80]
            anns.append(ann(aid, img, 7, bbox)); aid += 1
            dts.append(det(img, 7, jitter(rng, bbox, 0.1), rng.uniform(0.3, 1)))
        anns.append(ann(aid, img, 9, [300, 300, 100, 120])); aid += 1
    # image 40: GT but no detections at all; image 50: detections but no GT; 60: nothing.
    anns.append(ann(aid, 40, 7, [10, 10, 200, 200])); aid += 1
    anns.append(ann(aid, 40, 9, [250, 10, 20, 20])); aid += 1
    for j in range(4):
        dts.append(det(50, 7, [20 * j, 30, 40, 40], rng.uniform(0, 1)))
        dts.append(det(50, 11, [20 * j, 130, 40, 40], rng.uniform(0, 1)))
    # category 11 has detections but no GT; category 13 has neither.
    dts.append(det(10, 11, [5, 5, 50, 50], 0.9))
    gt = {"images": imgs, "annotations": anns, "categories": categories([7, 9, 11, 13])}
    return gt, dts


def case_many(rng):
    """More than 100 detections per image (truncation at maxDets=100) and tied scores."""
    imgs = [make_image(i) for i in range(1, 11)]
    anns, dts = [], []
    aid = 1
    for img in range(1, 11):
        boxes = []
        for j in range(30):
            w, h = rng.uniform(10, 150), rng.uniform(10, 150)
            bbox = [rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h]
            cat = 1 + j % 2
            anns.append(ann(aid, img, cat, bbox, area=w * h * rng.uniform(0.5, 1))); aid += 1
            boxes.append((bbox, cat))
        n = 120 + 10 * img
        for j in range(n):
            bbox, cat = boxes[j % 30]
            if j % 7 == 3:
                cat = 3 - cat
            # quantised scores: many exact ties within and across images
            score = round(float(rng.integers(0, 20)) / 20.0, 2)
            dts.append(det(img, cat, jitter(rng, bbox, 0.15), score))
    gt = {"images": imgs, "annotations": anns, "categories": categories([1, 2])}
    return gt, dts


def case_ties(rng):
    """All detections share a few scores; order of images and of entries decides precision."""
    imgs = [make_image(i) for i in (5, 3, 9, 1)]  # unsorted image list
    anns, dts = [], []
    aid = 1
    for img in (5, 3, 9, 1):
        for j in range(6):
            bbox = [20 + 100 * j, 50, 60, 60]
            anns.append(ann(aid, img, 1, bbox)); aid += 1
            # alternate true and false positives with identical scores
            dts.append(det(img, 1, [bbox[0] + 200, 300, 60, 60], 0.5))
            dts.append(det(img, 1, bbox if j % 2 == 0 else jitter(rng, bbox, 0.05), 0.5))
            dts.append(det(img, 1, jitter(rng, bbox, 0.2), 0.25))
    # duplicate detections of the same box with the same score
    dts.append(det(3, 1, [20, 50, 60, 60], 0.5))
    dts.append(det(3, 1, [20, 50, 60, 60], 0.5))
    gt = {"images": imgs, "annotations": anns, "categories": categories([1])}
    return gt, dts


def case_idzero(rng):
    """An annotation with id 0: pycocotools treats its matches as unmatched (dtm == 0)."""
    imgs = [make_image(i) for i in (1, 2)]
    anns = [
        ann(0, 1, 1, [10, 10, 100, 100]),
        ann(1, 1, 1, [200, 200, 50, 50]),
        ann(2, 2, 1, [10, 10, 100, 100]),
    ]
    dts = [
        det(1, 1, [12, 12, 100, 100], 0.9),
        det(1, 1, [200, 202, 50, 50], 0.8),
        det(2, 1, [11, 11, 100, 100], 0.7),
        det(2, 1, [400, 400, 20, 20], 0.6),
    ]
    gt = {"images": imgs, "annotations": anns, "categories": categories([1])}
    return gt, dts


def random_dataset(rng, n_images, cat_ids, empty_cat, dets_per_gt=1.0, fp_rate=6, crowd_p=0.04):
    imgs, anns, dts = [], [], []
    aid = 1
    img_ids = rng.permutation(np.arange(1, 3 * n_images))[:n_images]
    for img in img_ids:
        W, H = int(rng.integers(300, 800)), int(rng.integers(300, 800))
        imgs.append(make_image(img, W, H))
        n = int(rng.poisson(4))
        gts = []
        for _ in range(n):
            s = float(np.exp(rng.uniform(np.log(4), np.log(500))))
            w = min(W - 1, s * float(np.exp(rng.normal(0, 0.4))))
            h = min(H - 1, s * float(np.exp(rng.normal(0, 0.4))))
            bbox = [rng.uniform(0, W - w), rng.uniform(0, H - h), w, h]
            cat = int(rng.choice(cat_ids))
            crowd = int(rng.uniform() < crowd_p)
            a = ann(aid, img, cat, bbox, area=w * h * rng.uniform(0.4, 1.0), iscrowd=crowd)
            anns.append(a); aid += 1
            gts.append(a)
        if rng.uniform() < 0.05:
            continue  # an image without any detection
        for a in gts:
            k = int(rng.poisson(dets_per_gt))
            for _ in range(k):
                cat = a["category_id"] if rng.uniform() < 0.9 else int(rng.choice(cat_ids))
                dts.append(det(img, cat, jitter(rng, a["bbox"], 0.12), round(rng.uniform(), 3)))
        for _ in range(int(rng.poisson(fp_rate))):
            w, h = rng.uniform(2, W / 2), rng.uniform(2, H / 2)
            cat = int(rng.choice(cat_ids + [empty_cat]))
            dts.append(
                det(img, cat, [rng.uniform(0, W - w), rng.uniform(0, H - h), w, h],
                    round(rng.uniform(0, 0.7), 3))
            )
    cats = categories(sorted(cat_ids + [empty_cat]))
    return {"images": imgs, "annotations": anns, "categories": cats}, dts


def main():
    rng = np.random.default_rng(20240605)
    write_case("crowd", *case_crowd(rng), note="crowd GT, detections inside crowd regions")
    write_case("areas", *case_areas(rng), note="all area ranges, areas exactly 32^2 and 96^2")
    write_case("empty", *case_empty(rng), note="categories/images without GT or detections")
    write_case("many", *case_many(rng), note=">100 detections per image, tied scores")
    write_case("ties", *case_ties(rng), note="tied scores across images, unsorted image list")
    write_case("idzero", *case_idzero(rng), note="an annotation with id 0 (pycocotools quirk)")
    gt, dt = random_dataset(rng, 300, [1, 2, 3, 5, 8, 13, 21, 34], 40)
    write_case("random", gt, dt, note="300 random images, 9 categories (one without GT)")
    # DETR's evaluator restricts params.imgIds to the images it predicted.
    subset = sorted(int(i["id"]) for i in gt["images"][::3])
    write_case("subset", gt, dt, img_ids=subset, files_from="random",
               note="random case with params.imgIds = a third of the images")
    with open(os.path.join(OUT, "params.json"), "w") as f:
        p = COCOeval(iouType="bbox").params
        json.dump({"iouThrs": p.iouThrs.tolist(), "recThrs": p.recThrs.tolist()}, f)
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"fixtures: {total / 1e6:.2f} MB in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
