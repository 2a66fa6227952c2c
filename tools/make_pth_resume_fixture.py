#!/usr/bin/env python3
"""Reference for `detr-train --resume <official .pth>` continuing a run of the original: the
AdamW state and the epoch are taken over, not only the weights.

Writes `detr-train/tests/fixtures/resume_pth/`:
* `detr.json`: a micro DETR (ResNet-18 at width 4, one encoder and one decoder layer), seeded
  random weights;
* `checkpoint.pth`: what the original's `main.py` saves (`model`, `optimizer`,
  `lr_scheduler`, `epoch`, `args`) for that model after two AdamW steps with
  the original's two parameter groups (`lr` 1e-4 for everything but the backbone, `lr_backbone`
  1e-5 for the backbone parameters that train, i.e. layer2..layer4), weight decay 1e-4 and
  global-norm clipping at 0.1, `epoch` 3;
* `grads.safetensors`: the gradients of a third step, under the official parameter names;
* `after.safetensors`: the model's state dict after that third step (official names).

A resumed optimiser that has the moments and step counts of the file makes the third step land
on `after`; one that starts afresh (or assigns the moments to the wrong parameters) does not.
The gradients are seeded random values (not a loss's: the optimiser is what is checked, and
`tests/criterion_parity.rs` covers the gradients themselves). Not run by CI: the files are
committed and `detr-train/tests/learner.rs` reads them. Needs torch, safetensors.

    python tools/make_pth_resume_fixture.py
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixture as mmf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "detr-train" / "tests" / "fixtures" / "resume_pth"

LR = 1e-4
LR_BACKBONE = 1e-5
WEIGHT_DECAY = 1e-4
CLIP_MAX_NORM = 0.1
EPOCH = 3
CONFIG = {
    "backbone": "resnet18",
    "backbone_width": 4,
    "backbone_norm": "frozen",
    "dilation": False,
    "position_embedding": "sine",
    "hidden_dim": 16,
    "nheads": 2,
    "enc_layers": 1,
    "dec_layers": 1,
    "dim_feedforward": 32,
    "dropout": 0.0,
    "num_queries": 4,
    "pre_norm": False,
    "aux_loss": True,
    "num_classes": 3,
}


def param_groups(model):
    """The original's `param_dicts` (main.py): backbone parameters that train get their own
    learning rate."""
    named = list(model.named_parameters())
    rest = [p for n, p in named if "backbone" not in n and p.requires_grad]
    backbone = [p for n, p in named if "backbone" in n and p.requires_grad]
    return [{"params": rest}, {"params": backbone, "lr": LR_BACKBONE}]


def seeded_grads(model, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            out[n] = torch.randn(p.shape, generator=g) * 0.05
    return out


def step(model, opt, grads):
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.grad = grads[n].clone()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_MAX_NORM)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main():
    torch.manual_seed(0)
    model = mmf.DETR(CONFIG).train()
    # The original freezes only the ResNet (BackboneBase); a learned position embedding
    # (backbone.1) trains. The fixture uses the sine embedding, which has no parameters.
    assert not any(n.startswith("backbone.1.") for n, _ in model.named_parameters())

    opt = torch.optim.AdamW(param_groups(model), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.StepLR(opt, 200)
    for seed in (1, 2):
        step(model, opt, seeded_grads(model, seed))

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "detr.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "lr_scheduler": sched.state_dict(),
            "epoch": EPOCH,
            "args": None,
        },
        OUT / "checkpoint.pth",
    )

    grads = seeded_grads(model, 3)
    save_file({n: g.contiguous() for n, g in grads.items()}, OUT / "grads.safetensors")
    step(model, opt, grads)
    after = {n: t.detach().contiguous() for n, t in model.state_dict().items()}
    save_file(after, OUT / "after.safetensors")

    groups = opt.state_dict()["param_groups"]
    print(
        f"wrote {OUT}: {len(groups[0]['params'])} + {len(groups[1]['params'])} parameters in "
        f"the two groups, epoch {EPOCH}"
    )


if __name__ == "__main__":
    main()
