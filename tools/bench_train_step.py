#!/usr/bin/env python3
"""Times one DETR training step in PyTorch: forward, Hungarian matching (scipy), the set
loss with auxiliary decoder losses, backward, global-norm clipping at 0.1 and AdamW with the
two parameter groups (backbone 1e-5, the rest 1e-4, weight decay 1e-4), the same step that
`cargo run --release -p detr-train --example bench_train_step` times in Rust.

    python tools/bench_train_step.py --preset r50 --size 512 --batch 2
    python tools/bench_train_step.py --preset tiny --size 128 --batch 4
    python tools/bench_train_step.py --preset r50 --size 800 --batch 8 --device cuda

The model is the independent PyTorch DETR of tools/make_model_fixture.py (the one the Rust
model is proven against). `tiny` is detr-rs's tiny preset: ResNet-18 at width 16 with
GroupNorm and every backbone stage trainable, hidden 128, 4 heads, 2+2 layers, FFN 512,
30 queries. Inputs are random images with three fixed boxes per image, like the Rust
benchmark; the median of the timed steps is printed, split into forward, loss, backward and
optimiser.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_fixture import DETR, PRESETS, FrozenBatchNorm2d  # noqa: E402
from make_criterion_fixture import cost_matrix, cxcywh_to_xyxy, pairwise_giou, solve  # noqa: E402

TINY = dict(
    backbone="resnet18", backbone_width=16, dilation=False, position_embedding="sine",
    hidden_dim=128, nheads=4, enc_layers=2, dec_layers=2, dim_feedforward=512, dropout=0.1,
    num_queries=30, pre_norm=False, aux_loss=True, num_classes=91,
)


def group_norm_groups(c):
    wanted = max(1, min(32, c // 8))
    return next(g for g in range(wanted, 0, -1) if c % g == 0)


def to_group_norm(module):
    """Replaces every FrozenBatchNorm2d by a trainable GroupNorm (detr-rs's tiny preset)."""
    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            c = child.weight.shape[0]
            setattr(module, name, nn.GroupNorm(group_norm_groups(c), c))
        else:
            to_group_norm(child)


def set_loss(out, targets, num_classes, eos_coef=0.1):
    logits, boxes = out["logits"], out["boxes"]  # [L, B, Q, C+1], [L, B, Q, 4]
    dev = logits.device
    num_boxes = max(float(sum(len(l) for _, l in targets)), 1.0)
    weight = torch.ones(num_classes + 1, device=dev)
    weight[-1] = eos_coef
    total = 0.0
    for layer in range(logits.shape[0]):
        lg, bx = logits[layer], boxes[layer]
        bi, qi, tb_all, tl_all = [], [], [], []
        for b, (tb, tl) in enumerate(targets):
            with torch.no_grad():
                c = cost_matrix(lg[b].double().cpu(), bx[b].double().cpu(), tb.double().cpu(), tl).numpy()
            rows, cols, _ = solve(c)
            for q, t in zip(rows, cols):
                bi.append(b)
                qi.append(int(q))
                tb_all.append(tb[t])
                tl_all.append(int(tl[t]))
        target_classes = torch.full(lg.shape[:2], num_classes, dtype=torch.long, device=dev)
        bi_t, qi_t = torch.tensor(bi, device=dev), torch.tensor(qi, device=dev)
        target_classes[bi_t, qi_t] = torch.tensor(tl_all, device=dev)
        loss_ce = F.cross_entropy(lg.transpose(1, 2), target_classes, weight)
        src, tgt = bx[bi_t, qi_t], torch.stack(tb_all)
        loss_bbox = (src - tgt).abs().sum() / num_boxes
        giou = torch.diag(pairwise_giou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)))
        loss_giou = (1 - giou).sum() / num_boxes
        total = total + loss_ce + 5 * loss_bbox + 2 * loss_giou
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "r50"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronise the GPU)")
    ap.add_argument("--queries", type=int, default=None,
                    help="number of queries (default: the preset's); as the Rust benchmark's --queries")
    ap.add_argument("--dropout", type=float, default=None,
                    help="dropout (default: the preset's, 0.1); as the Rust benchmark's --dropout")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"

    def now():
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    torch.manual_seed(0)
    cfg = dict(TINY if args.preset == "tiny" else PRESETS["r50"])
    cfg["num_classes"] = 91
    if args.queries is not None:
        cfg["num_queries"] = args.queries
    if args.dropout is not None:
        cfg["dropout"] = args.dropout
    model = DETR(cfg)
    if args.preset == "tiny":
        to_group_norm(model.backbone)
        for p in model.backbone.parameters():
            p.requires_grad_(True)
    model.train()
    model.to(dev)
    backbone = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
    optim = torch.optim.AdamW(
        [{"params": rest, "lr": 1e-4}, {"params": backbone, "lr": 1e-5}], weight_decay=1e-4
    )
    n, s = args.batch, args.size
    images = torch.randn(n, 3, s, s).to(dev)
    mask = torch.zeros(n, s, s, dtype=torch.bool, device=dev)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4], [0.5, 0.7, 0.5, 0.3]], device=dev)
    targets = [(boxes, [1 + i % 5, 7, 18]) for i in range(n)]
    times = {k: [] for k in ("step", "forward", "loss", "backward", "optimiser")}
    for step in range(args.warmup + args.steps):
        t0 = now()
        out = model(images, mask)
        t1 = now()
        loss = set_loss(out, targets, cfg["num_classes"])
        t2 = now()
        optim.zero_grad()
        loss.backward()
        t3 = now()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optim.step()
        t4 = now()
        if step >= args.warmup:
            for k, v in zip(times, (t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    where = (f"{torch.cuda.get_device_name(dev)}" if cuda
             else f"{torch.get_num_threads()} threads")
    print(
        f"pytorch {torch.__version__} ({where}) {args.preset} batch "
        f"{n}x{s}x{s}: step {med['step']:.3f} s = {n / med['step']:.2f} images/s "
        f"(forward {med['forward']:.3f}, loss "
        f"{med['loss']:.3f}, backward {med['backward']:.3f}, optimiser {med['optimiser']:.3f}); "
        f"median of {args.steps}"
    )
    if cuda:
        print(f"pytorch peak GPU memory: allocated {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB, "
              f"reserved {torch.cuda.max_memory_reserved(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
