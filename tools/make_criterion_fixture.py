#!/usr/bin/env python3
"""Reference fixtures for detr-train's Hungarian matcher and set criterion.

Writes `detr-train/tests/fixtures/criterion/criterion.safetensors`. Not run by CI: the
file is committed and the Rust tests (`detr-train/tests/criterion_parity.rs`) read it.

The reference is written out here in PyTorch, in float64, from the original DETR semantics:

* matcher: `C = 5 * L1(cxcywh) - 1 * softmax_prob[:, target_class] - 2 * GIoU(xyxy)`,
  solved per image with `scipy.optimize.linear_sum_assignment` (rows = queries);
* `loss_ce`: cross-entropy over all queries, class weight `eos_coef = 0.1` for no-object,
  PyTorch's weighted mean (sum of w * nll over sum of w);
* `loss_bbox` / `loss_giou`: sum over matched pairs of L1 / (1 - GIoU), divided by
  `num_boxes = max(total targets, 1)`;
* `cardinality_error`: mean over images of |#(argmax != no-object) - #targets|;
* `class_error`: 100 - top-1 accuracy (in %) on matched queries of the last layer only;
  100 when there is no match (the original's `accuracy` returns 0 for empty targets);
* auxiliary layers 0..L-2 get the same losses (not `class_error`) with suffix `_i`;
* total = sum over layers of 1 * ce + 5 * bbox + 2 * giou; gradients of the total with
  respect to the logits and the (post-sigmoid) boxes.

Inputs are float32 (stored as such); the reference computes on them in float64. Matching
stability: for every layer and image, the gap between the optimal assignment cost and the
second-best one (found by forbidding each matched pair in turn and re-solving) must be at
least MIN_GAP; seeds are drawn until every case passes, so Burn's float32 costs (error about
1e-6 per entry) give identical indices.

Usage: python tools/make_criterion_fixture.py [--out PATH]
Needs torch, scipy, numpy and safetensors.
"""

import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file
from scipy.optimize import linear_sum_assignment

COST_CLASS, COST_BBOX, COST_GIOU = 1.0, 5.0, 2.0
W_CE, W_BBOX, W_GIOU = 1.0, 5.0, 2.0
EOS_COEF = 0.1
NUM_LAYERS = 6
MIN_GAP = 1e-2

# name, batch size, queries, num_classes, target counts per image
CASES = [
    ("b2_coco", 2, 50, 91, [3, 0]),
    ("b3_many", 3, 100, 6, [1, 40, 5]),
    ("b4_mixed", 4, 100, 20, [0, 7, 2, 12]),
    ("b2_fewer_queries", 2, 10, 4, [12, 3]),
]


def cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def pairwise_giou(a, b):
    """GIoU between every box of a [N,4] and b [M,4] (xyxy): [N,M]."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter_lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    inter_rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter_wh = (inter_rb - inter_lt).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union
    hull_lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    hull_rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    hull_wh = (hull_rb - hull_lt).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def cost_matrix(logits, boxes, tgt_boxes, tgt_labels):
    """Matching cost for one image of one layer: [Q, T] float64."""
    prob = logits.softmax(-1)
    cost_class = -prob[:, tgt_labels]
    cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
    cost_giou = -pairwise_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt_boxes))
    return COST_BBOX * cost_bbox + COST_CLASS * cost_class + COST_GIOU * cost_giou


def solve(cost):
    rows, cols = linear_sum_assignment(cost)
    return rows, cols, float(cost[rows, cols].sum())


def assignment_gap(cost):
    """Second-best minus best assignment cost (inf when the optimum is the only one)."""
    rows, cols, best = solve(cost)
    big = np.abs(cost).max() * 1e3 + 1e3
    second = np.inf
    for r, c in zip(rows, cols):
        forbidden = cost.copy()
        forbidden[r, c] = big
        _, _, value = solve(forbidden)
        if value < big / 2:
            second = min(second, value)
    return second - best


def random_targets(gen, count, num_classes):
    centres = torch.rand(count, 2, generator=gen) * 0.8 + 0.1
    sizes = torch.rand(count, 2, generator=gen) * 0.35 + 0.03
    # Keep the box inside the image.
    sizes = torch.minimum(sizes, 2 * torch.minimum(centres, 1 - centres))
    labels = torch.randint(0, num_classes, (count,), generator=gen)
    return torch.cat([centres, sizes], dim=1).float(), labels


def make_case(seed, batch, queries, num_classes, counts):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(NUM_LAYERS, batch, queries, num_classes + 1, generator=gen) * 2.0).float()
    # Most queries lean towards no-object, as a trained DETR's do.
    logits[..., num_classes] += 2.0
    raw = torch.randn(NUM_LAYERS, batch, queries, 4, generator=gen)
    raw[..., 2:] -= 1.5
    boxes = raw.sigmoid().float()
    targets = [random_targets(gen, n, num_classes) for n in counts]
    return logits, boxes, targets


def reference(logits32, boxes32, targets, num_classes):
    logits = logits32.double().requires_grad_(True)
    boxes = boxes32.double().requires_grad_(True)
    num_layers, batch, queries, _ = logits.shape
    tgt = [(b.double(), l) for b, l in targets]
    num_boxes = max(float(sum(len(l) for _, l in tgt)), 1.0)
    empty_weight = torch.ones(num_classes + 1, dtype=torch.float64)
    empty_weight[-1] = EOS_COEF

    losses = {}
    indices = []  # per layer: rows (image, query, target)
    min_gap = np.inf
    total = torch.zeros((), dtype=torch.float64)
    for layer in range(num_layers):
        rows_layer = []
        src_idx, tgt_boxes_m, tgt_labels_m = [], [], []
        for b in range(batch):
            tb, tl = tgt[b]
            if len(tl) == 0:
                continue
            with torch.no_grad():
                c = cost_matrix(logits[layer, b], boxes[layer, b], tb, tl).numpy()
            rows, cols, _ = solve(c)
            min_gap = min(min_gap, assignment_gap(c))
            for q, t in zip(rows, cols):
                rows_layer.append((b, int(q), int(t)))
                src_idx.append((b, int(q)))
                tgt_boxes_m.append(tb[t])
                tgt_labels_m.append(int(tl[t]))
        indices.append(rows_layer)

        lg = logits[layer]
        bx = boxes[layer]
        target_classes = torch.full((batch, queries), num_classes, dtype=torch.long)
        for (b, q), lab in zip(src_idx, tgt_labels_m):
            target_classes[b, q] = lab
        loss_ce = torch.nn.functional.cross_entropy(
            lg.reshape(-1, num_classes + 1), target_classes.reshape(-1), weight=empty_weight
        )
        if src_idx:
            bi = torch.tensor([s[0] for s in src_idx])
            qi = torch.tensor([s[1] for s in src_idx])
            src_boxes = bx[bi, qi]
            tgt_boxes = torch.stack(tgt_boxes_m)
            loss_bbox = (src_boxes - tgt_boxes).abs().sum() / num_boxes
            giou = torch.diag(pairwise_giou(cxcywh_to_xyxy(src_boxes), cxcywh_to_xyxy(tgt_boxes)))
            loss_giou = (1 - giou).sum() / num_boxes
        else:
            loss_bbox = bx.sum() * 0
            loss_giou = bx.sum() * 0
        with torch.no_grad():
            card_pred = (lg.argmax(-1) != num_classes).sum(1).double()
            tgt_len = torch.tensor([float(len(l)) for _, l in tgt], dtype=torch.float64)
            card_err = (card_pred - tgt_len).abs().mean()
        suffix = "" if layer == num_layers - 1 else f"_{layer}"
        losses["loss_ce" + suffix] = loss_ce
        losses["loss_bbox" + suffix] = loss_bbox
        losses["loss_giou" + suffix] = loss_giou
        losses["cardinality_error" + suffix] = card_err
        if layer == num_layers - 1:
            with torch.no_grad():
                if src_idx:
                    matched = lg[bi, qi]
                    correct = (matched.argmax(-1) == torch.tensor(tgt_labels_m)).double().sum()
                    acc = correct * 100.0 / len(src_idx)
                else:
                    acc = torch.zeros((), dtype=torch.float64)
                losses["class_error"] = 100.0 - acc
        total = total + W_CE * loss_ce + W_BBOX * loss_bbox + W_GIOU * loss_giou

    total.backward()
    losses["loss"] = total
    return losses, indices, logits.grad, boxes.grad, num_boxes, min_gap


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(
        here, "..", "detr-train", "tests", "fixtures", "criterion", "criterion.safetensors"
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args()

    tensors = {}
    meta_cases = []
    for ci, (name, batch, queries, num_classes, counts) in enumerate(CASES):
        for attempt in range(200):
            seed = 1000 * (ci + 1) + attempt
            logits, boxes, targets = make_case(seed, batch, queries, num_classes, counts)
            losses, indices, g_logits, g_boxes, num_boxes, gap = reference(
                logits, boxes, targets, num_classes
            )
            if gap >= MIN_GAP:
                break
        else:
            raise SystemExit(f"case {name}: no seed with a stable optimum")
        print(f"{name}: seed {seed}, min assignment gap {gap:.3e}, loss {losses['loss'].item():.6f}")
        names = list(losses.keys())
        tensors[f"{name}.logits"] = logits.contiguous()
        tensors[f"{name}.boxes"] = boxes.contiguous()
        tensors[f"{name}.tgt_boxes"] = torch.cat([b for b, _ in targets]).float().contiguous()
        tensors[f"{name}.tgt_labels"] = torch.cat([l for _, l in targets]).long().contiguous()
        tensors[f"{name}.tgt_counts"] = torch.tensor(counts, dtype=torch.long)
        tensors[f"{name}.indices"] = torch.tensor(indices, dtype=torch.long).reshape(
            NUM_LAYERS, -1, 3
        )
        tensors[f"{name}.losses"] = torch.stack([losses[n].detach() for n in names]).double()
        tensors[f"{name}.grad_logits"] = g_logits.float().contiguous()
        tensors[f"{name}.grad_boxes"] = g_boxes.float().contiguous()
        meta_cases.append(
            {
                "name": name,
                "num_classes": num_classes,
                "num_boxes": num_boxes,
                "seed": seed,
                "min_gap": gap,
                "losses": names,
            }
        )

    metadata = {
        "cases": json.dumps(meta_cases),
        "weights": json.dumps(
            {
                "cost_class": COST_CLASS,
                "cost_bbox": COST_BBOX,
                "cost_giou": COST_GIOU,
                "loss_ce": W_CE,
                "loss_bbox": W_BBOX,
                "loss_giou": W_GIOU,
                "eos_coef": EOS_COEF,
            }
        ),
        "generator": "tools/make_criterion_fixture.py",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file(tensors, args.out, metadata=metadata)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
