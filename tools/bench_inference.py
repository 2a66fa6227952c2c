#!/usr/bin/env python3
"""PyTorch side of detr-infer's inference benchmark: the reference DETR-R50 network of
tools/make_model_fixture.py (the original's architecture, random weights) on one 800x1066
input, after the same preprocessing work that detr-infer times (normalisation of a 1066x800
8-bit image; the size needs no resize) and PostProcess.

    python tools/bench_inference.py [--runs 3] [--threads 2]

Run by `cargo run --release -p detr-infer --example bench_inference`, which prints both.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixture as mmf  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = mmf.DETR(mmf.PRESETS["r50"]).eval()
    h, w = 800, 1066
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx % 256, yy % 256, (xx * 7 + yy * 13) % 256], -1).astype(np.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    times = []
    with torch.no_grad():
        for i in range(args.runs + 1):
            t = time.perf_counter()
            x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - mean) / std
            mask = torch.zeros(1, h, w, dtype=torch.bool)
            out = model(x[None], mask)
            prob = out["logits"][-1].softmax(-1)
            scores, labels = prob[..., :-1].max(-1)
            cx, cy, bw, bh = out["boxes"][-1].unbind(-1)
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            boxes = (boxes * torch.tensor([w, h, w, h])).tolist()
            s = time.perf_counter() - t
            print(f"run {i}{' (warm-up)' if i == 0 else ''}: {s:.3f} s", file=sys.stderr)
            if i > 0:
                times.append(s)
    print(f"PyTorch {torch.__version__} ({args.threads} threads): mean {sum(times) / len(times):.3f} s, "
          f"min {min(times):.3f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
