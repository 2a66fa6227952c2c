#!/usr/bin/env python3
"""Reference fixture for detr-infer: end-to-end predictions of the tiny_r18 model in PyTorch.

From two small PNG images written here, it applies the original DETR's validation transform
(PIL bilinear resize with `get_size_with_aspect_ratio`, ToTensor, ImageNet Normalize), runs
the tiny_r18 reference network of tools/make_model_fixture.py with the weights in
detr-model/tests/fixtures/tiny_r18.pth, and applies the original's PostProcess (softmax, drop
the no-object column, max over classes, cxcywh -> xyxy times [w, h, w, h] of the original
image). It also records the last decoder layer's cross-attention, averaged over heads.

Each image is run alone (batch size 1) and both together (padded to the larger, mask true on
padding), so the Rust side can check both.

Not run by CI. Requirements: torch, Pillow, safetensors.

    python tools/make_infer_fixture.py   # writes detr-infer/tests/fixtures/{images/*.png,tiny_r18_predict.json}
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixture as mmf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "detr-model" / "tests" / "fixtures"
OUT_DIR = REPO / "detr-infer" / "tests" / "fixtures"

SHORTEST_SIDE = 96
LONGEST_SIDE = 160
# (width, height) of the two images; the second needs the longest-side cap.
SIZES = {"scene_a.png": (150, 110), "scene_b.png": (90, 200)}
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def make_image(w, h, seed):
    """A smooth background with a few filled rectangles and some noise (8-bit RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        120 + 80 * np.sin(xx / 17.0 + seed),
        100 + 60 * np.cos(yy / 13.0),
        90 + 50 * np.sin((xx + yy) / 23.0),
    ], axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        img[y0:y1, x0:x1] = rng.integers(0, 256, size=3)
    img += rng.normal(0, 8, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def get_size_with_aspect_ratio(w, h, size, max_size):
    """The original's rule: cap the shorter side so the longer fits, rounding it first."""
    if max_size is not None:
        min_orig, max_orig = float(min(w, h)), float(max(w, h))
        if max_orig / min_orig * size > max_size:
            size = int(round(max_size * min_orig / max_orig))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def prepare(img):
    w, h = img.size
    oh, ow = get_size_with_aspect_ratio(w, h, SHORTEST_SIDE, LONGEST_SIDE)
    resized = img.resize((ow, oh), Image.BILINEAR)  # torchvision's PIL path
    t = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    t = (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return t


def postprocess(logits, boxes, sizes):
    """PostProcess: logits [B,Q,C+1], boxes [B,Q,4] cxcywh in [0,1]; sizes [(h, w)]."""
    prob = logits.softmax(-1)
    scores, labels = prob[..., :-1].max(-1)
    cx, cy, bw, bh = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], dim=-1)
    scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=torch.float32)
    xyxy = xyxy * scale[:, None, :]
    top2 = prob[..., :-1].topk(2, dim=-1).values
    return scores, labels, xyxy, (top2[..., 0] - top2[..., 1])


def main():
    torch.set_default_dtype(torch.float32)
    cfg = json.loads((MODEL_DIR / "tiny_r18.json").read_text())
    model = mmf.DETR(cfg).eval()
    sd = torch.load(MODEL_DIR / "tiny_r18.pth", map_location="cpu")["model"]
    model.load_state_dict(sd, strict=True)

    captured = {}

    def hook(module, args, _output):
        query, key, _value, mask = args
        lq, b, d = query.shape
        h = module.nheads
        hd = d // h
        wq, wk, _ = module.in_proj_weight.chunk(3, dim=0)
        bq, bk, _ = module.in_proj_bias.chunk(3, dim=0)
        q = (torch.nn.functional.linear(query, wq, bq) * hd ** -0.5).reshape(lq, b, h, hd)
        k = torch.nn.functional.linear(key, wk, bk).reshape(key.shape[0], b, h, hd)
        att = q.permute(1, 2, 0, 3) @ k.permute(1, 2, 3, 0)
        att = att.masked_fill(mask[:, None, None, :], float("-inf")).softmax(-1)
        captured["attn"] = att.mean(1)  # [b, Q, h*w]

    last = model.transformer.decoder.layers[-1] if hasattr(model.transformer, "decoder") else None
    if last is None:
        raise SystemExit("unexpected reference model layout")
    last.multihead_attn.register_forward_hook(hook)

    OUT_DIR.joinpath("images").mkdir(parents=True, exist_ok=True)
    images, tensors = [], []
    for i, (name, (w, h)) in enumerate(SIZES.items()):
        img = make_image(w, h, seed=7 + i)
        img.save(OUT_DIR / "images" / name)
        img = Image.open(OUT_DIR / "images" / name).convert("RGB")
        images.append((name, img))
        tensors.append(prepare(img))

    def run(batch_tensors, batch_images):
        hmax = max(t.shape[1] for t in batch_tensors)
        wmax = max(t.shape[2] for t in batch_tensors)
        x = torch.zeros(len(batch_tensors), 3, hmax, wmax)
        mask = torch.ones(len(batch_tensors), hmax, wmax, dtype=torch.bool)
        for j, t in enumerate(batch_tensors):
            x[j, :, : t.shape[1], : t.shape[2]] = t
            mask[j, : t.shape[1], : t.shape[2]] = False
        with torch.no_grad():
            out = model(x, mask)
        sizes = [(im.size[1], im.size[0]) for _, im in batch_images]
        s, l, b, margin = postprocess(out["logits"][-1], out["boxes"][-1], sizes)
        fmask = out["feature_mask"]
        res = []
        for j in range(len(batch_tensors)):
            valid_h = int((~fmask[j, :, 0]).sum())
            valid_w = int((~fmask[j, 0, :]).sum())
            fh, fw = fmask.shape[1:]
            att = captured["attn"][j].reshape(-1, fh, fw)[:, :valid_h, :valid_w]
            res.append(dict(
                scores=s[j].tolist(), labels=l[j].tolist(), boxes=b[j].tolist(),
                min_label_margin=float(margin[j].min()),
                attention_hw=[valid_h, valid_w], attention=att.reshape(-1).tolist(),
            ))
        return res

    single = [run([t], [im])[0] for t, im in zip(tensors, images)]
    batched = run(tensors, images)
    fixture = dict(
        model="detr-model/tests/fixtures/tiny_r18.pth",
        shortest_side=SHORTEST_SIDE, longest_side=LONGEST_SIDE,
        images=[dict(file=name, orig_size=[im.size[1], im.size[0]],
                     input_size=list(t.shape[1:])) for (name, im), t in zip(images, tensors)],
        single=single, batched=batched,
    )
    (OUT_DIR / "tiny_r18_predict.json").write_text(json.dumps(fixture) + "\n")
    for name, r in zip(SIZES, single):
        print(f"{name}: scores {min(r['scores']):.3f}..{max(r['scores']):.3f}, labels "
              f"{sorted(set(r['labels']))}, min top-1/top-2 margin {r['min_label_margin']:.2e}, "
              f"attention {r['attention_hw']}")
    diff = max(abs(a - b) for r1, r2 in zip(single, batched) for a, b in zip(r1["scores"], r2["scores"]))
    print(f"batched vs single: max score difference {diff:.2e} (padding changes the outputs)")


if __name__ == "__main__":
    main()
