#!/usr/bin/env python3
"""Benchmark COCO bbox evaluation: detr-rs (Rust) against pycocotools and faster-coco-eval.

Generates a COCO-like ground truth (default 5,000 images, 80 categories, ~7 objects per image,
some crowd) and DETR-like results (100 detections per image: jittered ground truth plus
random boxes, ~17-digit float scores), then times, in the same run:

* pycocotools: loadRes + evaluate + accumulate + summarize (and the json load separately),
* faster-coco-eval (if installed): the same with COCOeval_faster,
* detr-rs: `datasets/examples/bench_coco_eval.rs` (reading, indexing, evaluation),

and checks that all 12 numbers agree. Not run by CI. From the repository root:

    CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build -p datasets --example bench_coco_eval
    python3 tools/bench_cocoeval.py --rust target/debug/examples/bench_coco_eval

(`CARGO_PROFILE_DEV_OPT_LEVEL=3` builds the workspace crates optimised without a release
build of Burn; dependencies are already at opt-level 3 in the dev profile.)
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np


def make_data(n_images, dets_per_image, n_cats, seed):
    rng = np.random.default_rng(seed)
    cat_ids = [i for i in range(1, 91)][:n_cats] if n_cats <= 90 else list(range(1, n_cats + 1))
    images, anns, dets = [], [], []
    aid = 1
    for img in range(1, n_images + 1):
        W, H = int(rng.integers(400, 641)), int(rng.integers(300, 481))
        images.append({"id": img, "file_name": f"{img:012d}.jpg", "width": W, "height": H})
        n = int(rng.poisson(7))
        sizes = np.exp(rng.uniform(np.log(4), np.log(400), n))
        boxes = []
        for s in sizes:
            w = float(min(W - 1, s * np.exp(rng.normal(0, 0.3))))
            h = float(min(H - 1, s * np.exp(rng.normal(0, 0.3))))
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            cat = int(rng.choice(cat_ids))
            crowd = int(rng.uniform() < 0.01)
            bbox = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
            anns.append({"id": aid, "image_id": img, "category_id": cat, "bbox": bbox,
                         "area": float(w * h * rng.uniform(0.5, 1.0)), "iscrowd": crowd})
            boxes.append((bbox, cat))
            aid += 1
        for k in range(dets_per_image):
            if boxes and k < 3 * len(boxes):
                (x, y, w, h), cat = boxes[k % len(boxes)]
                x += rng.normal(0, 0.08) * w
                y += rng.normal(0, 0.08) * h
                w *= float(np.exp(rng.normal(0, 0.1)))
                h *= float(np.exp(rng.normal(0, 0.1)))
                if rng.uniform() < 0.1:
                    cat = int(rng.choice(cat_ids))
                score = float(np.float32(rng.beta(5, 2)))
            else:
                w, h = float(rng.uniform(2, W / 2)), float(rng.uniform(2, H / 2))
                x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
                cat = int(rng.choice(cat_ids))
                score = float(np.float32(rng.beta(1, 8)))
            # DETR writes float32 values widened to float64 (17 significant digits).
            bbox = [float(np.float32(v)) for v in (x, y, w, h)]
            dets.append({"image_id": img, "category_id": cat, "bbox": bbox, "score": score})
    cats = [{"id": c, "name": f"cat{c}", "supercategory": "thing"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def time_pycocotools(gt_path, dt_path, module):
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Eval
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        gt = COCO(gt_path)
        t1 = time.perf_counter()
        with open(dt_path) as f:
            results = json.load(f)
        t2 = time.perf_counter()
        dt = gt.loadRes(results)
        t3 = time.perf_counter()
        ev = Eval(gt, dt, "bbox")
        ev.evaluate()
        t4 = time.perf_counter()
        ev.accumulate()
        t5 = time.perf_counter()
        ev.summarize()
        t6 = time.perf_counter()
    return {
        "read_gt_s": t1 - t0,
        "read_dt_s": t2 - t1,
        "load_res_s": t3 - t2,
        "evaluate_s": t4 - t3,
        "accumulate_s": t5 - t4,
        "summarize_s": t6 - t5,
        "eval_total_s": t6 - t3,
        "stats": [float(v) for v in ev.stats],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--cats", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default="target/bench_cocoeval", help="where the json files go")
    ap.add_argument("--rust", help="path of the built bench_coco_eval example")
    ap.add_argument("--threads", default="", help="comma list of RAYON_NUM_THREADS to try")
    args = ap.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    gt_path = os.path.join(args.dir, f"gt_{args.images}.json")
    dt_path = os.path.join(args.dir, f"dt_{args.images}x{args.dets}.json")
    if not (os.path.exists(gt_path) and os.path.exists(dt_path)):
        gt, dt = make_data(args.images, args.dets, args.cats, args.seed)
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(dt, f)
    print(f"data: {gt_path} ({os.path.getsize(gt_path) / 1e6:.1f} MB), "
          f"{dt_path} ({os.path.getsize(dt_path) / 1e6:.1f} MB)")

    rows = {}
    rows["pycocotools"] = time_pycocotools(gt_path, dt_path, "pycocotools")
    try:
        import faster_coco_eval  # noqa: F401
        rows["faster-coco-eval"] = time_pycocotools(gt_path, dt_path, "faster")
    except ImportError:
        print("faster-coco-eval not installed; skipped")
    if args.rust:
        for threads in [t for t in args.threads.split(",") if t] or [None]:
            env = dict(os.environ)
            name = "detr-rs"
            if threads:
                env["RAYON_NUM_THREADS"] = threads
                name = f"detr-rs ({threads} thr)"
            out = subprocess.run([args.rust, gt_path, dt_path, "3"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r["eval_total_s"] = r["evaluate_s"]
            r["load_res_s"] = r["index_gt_s"]
            rows[name] = r

    ref = np.array(rows["pycocotools"]["stats"])
    print()
    print("| implementation | read GT s | read results s | loadRes/index s | evaluate s | "
          "max |Δstats| vs pycocotools |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        d = float(np.max(np.abs(np.array(r["stats"]) - ref)))
        print(f"| {name} | {r['read_gt_s']:.2f} | {r['read_dt_s']:.2f} | {r['load_res_s']:.2f} | "
              f"{r['eval_total_s']:.2f} | {d:.1e} |")
    print()
    print("pycocotools stats:", [round(v, 4) for v in rows["pycocotools"]["stats"]])
    bad = [n for n, r in rows.items()
           if n.startswith("detr-rs") and np.max(np.abs(np.array(r["stats"]) - ref)) > 1e-9]
    if bad:
        print("MISMATCH:", bad, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
