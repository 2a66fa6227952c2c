#!/usr/bin/env python3
"""Checks `detr-infer export` against the Python world (not run by CI).

1. `detr-infer export --format hf` of the tiny_r18 fixture (an official-layout `.pth`), then
   `DetrForObjectDetection.from_pretrained(DIR, output_loading_info=True)`: no missing,
   unexpected or mismatched keys;
2. `detr-infer export --format official`, then the reference PyTorch DETR of
   tools/make_model_fixture.py `load_state_dict(safetensors.torch.load_file(...), strict=True)`;
3. both Python models run on the two images of detr-infer's fixture with the original's
   validation transform and PostProcess, against `detr-infer predict --threshold 0` on the same
   images (every query): scores within 1e-4 relative to the largest score, boxes within 1e-4
   relative to the image size (the parity tolerance of detr-model/tests/parity.rs);
4. the refusals: `--preset tiny` (GroupNorm) for `--format hf` must fail naming
   `backbone_norm`, without writing anything.

    cargo build -p detr-infer --release     # a debug build works too (the models are tiny)
    python tools/check_hf_export.py [--bin target/release/detr-infer]

Requirements: torch, transformers (5.x), safetensors, Pillow, numpy.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_infer_fixture as mif  # noqa: E402
import make_model_fixture as mmf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "detr-model" / "tests" / "fixtures"
IMAGES = REPO / "detr-infer" / "tests" / "fixtures" / "images"
TOL = 1e-4


def sh(cmd):
    print("$", " ".join(str(c) for c in cmd))
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    return res


def ours(binary, out):
    res = sh([binary, "predict", "--weights", MODEL / "tiny_r18.pth",
              "--config", MODEL / "tiny_r18.json", "--shortest-side", mif.SHORTEST_SIDE,
              "--longest-side", mif.LONGEST_SIDE, "--threshold", "0", "--out", out, IMAGES])
    if res.returncode != 0:
        sys.exit(f"detr-infer predict failed:\n{res.stderr}")
    records = json.loads((Path(out) / "predictions.json").read_text())
    by_file = {}
    for r in records:
        by_file.setdefault(Path(r["file_name"]).name, []).append(r)
    return by_file


def compare(name, run, by_file):
    worst_s, worst_b = 0.0, 0.0
    for file in sorted(mif.SIZES):
        img = Image.open(IMAGES / file).convert("RGB")
        x = mif.prepare(img)[None]
        with torch.no_grad():
            logits, boxes = run(x)
        w, h = img.size
        scores, labels, xyxy, _ = mif.postprocess(logits, boxes, [(h, w)])
        theirs = sorted(
            zip(scores[0].tolist(), labels[0].tolist(), xyxy[0].tolist()), key=lambda t: -t[0])
        mine = sorted(by_file[file], key=lambda r: -r["score"])
        assert len(mine) == len(theirs), (len(mine), len(theirs))
        top = max(s for s, _, _ in theirs)
        for r, (s, label, b) in zip(mine, theirs):
            x0, y0, bw, bh = r["bbox"]
            worst_s = max(worst_s, abs(r["score"] - s) / top)
            diff = max(abs(a - c) for a, c in zip([x0, y0, x0 + bw, y0 + bh], b))
            worst_b = max(worst_b, diff / max(w, h))
            if abs(r["score"] - s) / top < TOL:
                assert r["category_id"] == label, (file, r, label)
    ok = worst_s < TOL and worst_b < TOL
    print(f"{name}: scores {worst_s:.2e}, boxes {worst_b:.2e} (tolerance {TOL:.0e}) "
          f"{'ok' if ok else 'FAILED'}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get(
        "DETR_INFER", str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
                          / "release" / "detr-infer")))
    args = ap.parse_args()
    from transformers import DetrForObjectDetection

    tmp = Path(tempfile.mkdtemp(prefix="detr-export-check-"))
    by_file = ours(args.bin, tmp / "predict")
    ok = True

    hf_dir = tmp / "hf"
    res = sh([args.bin, "export", "--weights", MODEL / "tiny_r18.pth", "--config",
              MODEL / "tiny_r18.json", "--format", "hf", "--out", hf_dir])
    if res.returncode != 0:
        sys.exit(f"export --format hf failed:\n{res.stderr}")
    model, info = DetrForObjectDetection.from_pretrained(hf_dir, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    print(f"from_pretrained loading info: {info}")
    if problems:
        print(f"FAILED: from_pretrained reported {problems}")
        ok = False

    def run_hf(x):
        out = model(pixel_values=x, pixel_mask=torch.ones(x.shape[0], *x.shape[2:],
                                                          dtype=torch.long))
        return out.logits, out.pred_boxes

    ok &= compare("transformers from_pretrained(export --format hf)", run_hf, by_file)

    official = tmp / "official.safetensors"
    res = sh([args.bin, "export", "--weights", MODEL / "tiny_r18.pth", "--config",
              MODEL / "tiny_r18.json", "--format", "official", "--out", official])
    if res.returncode != 0:
        sys.exit(f"export --format official failed:\n{res.stderr}")
    cfg = json.loads((MODEL / "tiny_r18.json").read_text())
    ref = mmf.DETR(cfg).eval()
    ref.load_state_dict(load_file(str(official)), strict=True)
    print("PyTorch DETR load_state_dict(strict=True): ok")

    def run_ref(x):
        out = ref(x, torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool))
        return out["logits"][-1], out["boxes"][-1]

    ok &= compare("PyTorch DETR load_state_dict(export --format official)", run_ref, by_file)

    refused = tmp / "refused"
    res = sh([args.bin, "export", "--weights", MODEL / "tiny_r18.pth", "--preset", "tiny",
              "--format", "hf", "--out", refused])
    if res.returncode == 0 or "backbone_norm" not in res.stderr or refused.exists():
        print(f"FAILED: --preset tiny was not refused clearly: {res.returncode} {res.stderr}")
        ok = False
    else:
        # The first line is the error (a backtrace may follow when RUST_BACKTRACE is set).
        print(f"--preset tiny --format hf refused: {res.stderr.strip().splitlines()[0]}")

    print("ALL OK" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
