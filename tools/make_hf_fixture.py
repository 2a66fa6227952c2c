#!/usr/bin/env python3
"""Fixtures written by transformers itself: small `DetrForObjectDetection`s with transformers'
own ResNet backbone (`use_timm_backbone=False`, the layout transformers writes when timm is not
installed), saved with `save_pretrained`, and their outputs on a padded batch.

Not run by CI. Requirements: torch, transformers (5.x), safetensors.

    python tools/make_hf_fixture.py        # writes detr-model/tests/fixtures/hf_*/

Per fixture NAME it writes the folder `hf_NAME/` with
- `model.safetensors`, `config.json`: exactly what `save_pretrained` wrote;
- `detr.json`: the same model as a detr-rs `DetrConfig`;
- `io.safetensors`: `images` [B,3,H,W] (float32, padded), `mask` [B,H,W] (u8, 1 on padding:
  detr-rs' polarity; transformers' `pixel_mask` is its negation), `logits` [B,Q,C+1] and
  `boxes` [B,Q,4] from transformers in float32 (`auxiliary_loss=False`: with it, transformers
  normalises the decoder's running state, which the original does not).

Weights are transformers' initialisation made non-trivial (random FrozenBatchNorm statistics,
non-zero biases, perturbed LayerNorms, spread queries), so that queries differ and a wrong
mapping cannot go unnoticed.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "detr-model" / "tests" / "fixtures"

DEPTHS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3],
          "resnet101": [3, 4, 23, 3]}

FIXTURES = {
    # Basic blocks, sine positions.
    "r18_sine": dict(backbone="resnet18", backbone_width=8, position_embedding="sine",
                     hidden_dim=32, nheads=4, enc_layers=2, dec_layers=2, dim_feedforward=64,
                     num_queries=10, num_classes=5),
    # Bottleneck blocks (shortcut in every stage), learned positions.
    "r50_learned": dict(backbone="resnet50", backbone_width=8, position_embedding="learned",
                        hidden_dim=32, nheads=2, enc_layers=1, dec_layers=2, dim_feedforward=48,
                        num_queries=8, num_classes=3),
}

# True (H, W) of the two images; the batch is padded to the largest.
SIZES = [(96, 128), (80, 96)]


def hf_config(c):
    bottleneck = c["backbone"] in ("resnet50", "resnet101")
    w = c["backbone_width"]
    exp = 4 if bottleneck else 1
    backbone = ResNetConfig(
        embedding_size=w,
        hidden_sizes=[w * exp, 2 * w * exp, 4 * w * exp, 8 * w * exp],
        depths=DEPTHS[c["backbone"]],
        layer_type="bottleneck" if bottleneck else "basic",
        hidden_act="relu",
        downsample_in_first_stage=False,
        downsample_in_bottleneck=False,
        out_features=["stage4"],
    )
    return DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        use_pretrained_backbone=False,
        num_queries=c["num_queries"],
        encoder_layers=c["enc_layers"],
        decoder_layers=c["dec_layers"],
        encoder_ffn_dim=c["dim_feedforward"],
        decoder_ffn_dim=c["dim_feedforward"],
        encoder_attention_heads=c["nheads"],
        decoder_attention_heads=c["nheads"],
        d_model=c["hidden_dim"],
        position_embedding_type=c["position_embedding"],
        auxiliary_loss=False,
        num_labels=c["num_classes"],
    )


def detr_rs_config(c):
    return dict(
        backbone=c["backbone"], backbone_width=c["backbone_width"], backbone_norm="frozen",
        dilation=False, position_embedding=c["position_embedding"], hidden_dim=c["hidden_dim"],
        nheads=c["nheads"], enc_layers=c["enc_layers"], dec_layers=c["dec_layers"],
        dim_feedforward=c["dim_feedforward"], dropout=0.1, num_queries=c["num_queries"],
        pre_norm=False, aux_loss=False, num_classes=c["num_classes"],
    )


@torch.no_grad()
def perturb(model, g):
    for name, t in model.state_dict().items():
        if name.endswith("running_mean"):
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
        elif "normalization.weight" in name:
            t.copy_(torch.rand(t.shape, generator=g) * 0.4 + 0.4)
        elif "normalization.bias" in name:
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif "layer_norm" in name or "layernorm" in name:
            base = 1.0 if name.endswith("weight") else 0.0
            t.copy_(base + torch.randn(t.shape, generator=g) * 0.1)
        elif name.endswith("bias"):
            t.copy_(torch.randn(t.shape, generator=g) * 0.05)
        elif "query_position_embeddings" in name or "row_embeddings" in name \
                or "column_embeddings" in name:
            t.copy_(torch.randn(t.shape, generator=g))
        elif name.endswith("weight") and t.dim() >= 2 and "backbone" not in name:
            # transformers initialises linear layers with std 0.02: attention would be uniform
            # and every query alike. Fan-in scaling, sharper for queries and keys.
            gain = 2.0 if ("q_proj" in name or "k_proj" in name) else 1.0
            fan_in = t[0].numel()
            t.copy_(torch.randn(t.shape, generator=g) * gain / fan_in ** 0.5)


def batch(g):
    h = max(s[0] for s in SIZES)
    w = max(s[1] for s in SIZES)
    images = torch.zeros(len(SIZES), 3, h, w)
    pixel_mask = torch.zeros(len(SIZES), h, w, dtype=torch.long)
    for i, (ih, iw) in enumerate(SIZES):
        images[i, :, :ih, :iw] = torch.randn(3, ih, iw, generator=g)
        pixel_mask[i, :ih, :iw] = 1
    return images, pixel_mask


def main():
    for name, c in FIXTURES.items():
        g = torch.Generator().manual_seed(17)
        torch.manual_seed(17)
        model = DetrForObjectDetection(hf_config(c)).eval()
        perturb(model, g)
        out_dir = FIXTURE_DIR / f"hf_{name}"
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        # Read back what transformers wrote: the outputs must come from the saved file.
        model = DetrForObjectDetection.from_pretrained(out_dir).eval()
        images, pixel_mask = batch(g)
        out = model(pixel_values=images, pixel_mask=pixel_mask)
        save_file(
            {
                "images": images.contiguous(),
                "mask": (1 - pixel_mask).to(torch.uint8).contiguous(),
                "logits": out.logits.float().contiguous(),
                "boxes": out.pred_boxes.float().contiguous(),
            },
            str(out_dir / "io.safetensors"),
        )
        (out_dir / "detr.json").write_text(json.dumps(detr_rs_config(c), indent=2) + "\n")
        probs = out.logits.softmax(-1)[..., :-1].max(-1).values
        print(f"{name}: logits {tuple(out.logits.shape)}, score range "
              f"{probs.min():.3f}..{probs.max():.3f}, box std {out.pred_boxes.std():.3f}")


if __name__ == "__main__":
    main()
