#!/usr/bin/env python3
"""Reference fixtures for detr-model: small random-weight DETRs written out in PyTorch.

The network below is written from the semantics of the original facebookresearch/detr
(torchvision ResNet with FrozenBatchNorm2d, sine or learned positions, post-norm or pre-norm
transformer with positions on queries and keys only, decoder final norm applied to a copy of
every layer's output, class head and 3-layer box MLP with sigmoid). Parameter names follow the
official DETR state dict (`../shared/reference/detr_r50_state_dict_keys.tsv`), and the Hugging
Face `DetrForObjectDetection` (timm backbone) layout is derived from them programmatically.

Not run by CI. Requirements: torch, safetensors (torchvision and scipy are used for extra
self-checks when present).

    python tools/make_model_fixture.py                 # writes detr-model/tests/fixtures/*
    python tools/make_model_fixture.py --r50 OUTDIR    # full r50 preset (not committed)
    python tools/make_model_fixture.py --r50 OUTDIR --float64-check

Per fixture NAME it writes NAME.json (config), NAME.pth ({"model": state_dict}, official
names), NAME_hf.safetensors (Hugging Face layout, when the config can be represented there)
and NAME_io.safetensors (inputs and intermediate/final outputs, see `io_tensors`).
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "detr-model" / "tests" / "fixtures"
REFERENCE_DIRS = [REPO.parent / "shared" / "reference", REPO / "shared" / "reference"]

CONFIG_KEYS = [
    "backbone", "backbone_width", "dilation", "position_embedding", "hidden_dim", "nheads",
    "enc_layers", "dec_layers", "dim_feedforward", "dropout", "num_queries", "pre_norm",
    "aux_loss", "num_classes",
]

PRESETS = {
    "tiny_r18": dict(
        backbone="resnet18", backbone_width=16, dilation=False, position_embedding="sine",
        hidden_dim=64, nheads=4, enc_layers=2, dec_layers=3, dim_feedforward=128, dropout=0.1,
        num_queries=12, pre_norm=False, aux_loss=True, num_classes=6,
    ),
    "tiny_r50dc5": dict(
        backbone="resnet50", backbone_width=8, dilation=True, position_embedding="learned",
        hidden_dim=32, nheads=2, enc_layers=1, dec_layers=2, dim_feedforward=64, dropout=0.1,
        num_queries=8, pre_norm=True, aux_loss=True, num_classes=4,
    ),
    "r50": dict(
        backbone="resnet50", backbone_width=64, dilation=False, position_embedding="sine",
        hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048, dropout=0.1,
        num_queries=100, pre_norm=False, aux_loss=True, num_classes=91,
    ),
}

QK_GAIN = 2.0  # query/key projection gain over Xavier: sharper attention, distinct queries
BOX_GAIN = 3.0  # last box-MLP layer weight std = BOX_GAIN / sqrt(hidden)

BRANCH_END_WEIGHT = (0.2, 0.5)  # U(lo, hi) weight of the last FrozenBN of each residual branch
FFN_ROW_CENTRE = True
VO_GAIN = 0.6  # value and out_proj gain over Xavier
HEAD_STD = 1.0  # std of the calibrated class/box pre-activations
POS_STD = 0.5  # learned row/col embeddings ~ N(0, POS_STD)

# (true H, true W) of the two images of each input batch; the batch is padded to the max.
BATCHES_TINY = [
    [(128, 160), (96, 128)],
    [(160, 96), (112, 64)],
]
BATCHES_R50 = [[(608, 760), (512, 704)]]

# ---------------------------------------------------------------------------------------------
# Backbone: torchvision-style ResNet with FrozenBatchNorm2d and a configurable base width.
# ---------------------------------------------------------------------------------------------


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with constant statistics and affine: y = x * scale + shift,
    scale = w * rsqrt(var + eps), shift = b - mean * scale. All four are buffers."""

    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))
        self.calibrate = None  # a torch.Generator while calibrating statistics
        self.branch_end = False  # last BN of a residual branch: smaller weight (see below)

    def forward(self, x):
        if self.calibrate is not None:
            self._calibrate(x, self.calibrate)
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    @torch.no_grad()
    def _calibrate(self, x, g):
        # Statistics of this very input (so activations stay O(1) whatever the depth),
        # deliberately perturbed so that the BN is not an exact standardisation.
        n = x.shape[1]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        std = var.sqrt()
        self.running_mean.copy_(mean + 0.1 * std * torch.randn(n, generator=g))
        self.running_var.copy_(var * torch.exp(0.4 * (torch.rand(n, generator=g) - 0.5)) + 1e-3)
        # the last BN of each residual branch gets a smaller weight (as trained ResNets have):
        # the identity path dominates and float32 rounding is not amplified with depth
        lo, hi = BRANCH_END_WEIGHT if self.branch_end else (0.6, 1.4)
        self.weight.copy_(lo + (hi - lo) * torch.rand(n, generator=g))
        self.bias.copy_(0.05 + 0.25 * torch.randn(n, generator=g))


def conv3x3(cin, cout, stride=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        if dilation > 1:
            # torchvision's BasicBlock refuses dilation as well (no resnet18/34 DC5)
            raise ValueError("dilation > 1 is not supported with BasicBlock (resnet18/34)")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.bn2.branch_end = True
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride sits on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = FrozenBatchNorm2d(planes * self.expansion)
        self.bn3.branch_end = True
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_SPECS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class ResNetBody(nn.Module):
    """torchvision ResNet up to layer4 (no avgpool/fc), names as torchvision's."""

    def __init__(self, name, width=64, dilation=False):
        super().__init__()
        block, counts = RESNET_SPECS[name]
        self.inplanes = width
        self.cur_dilation = 1
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, counts[0])
        self.layer2 = self._make_layer(block, width * 2, counts[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, counts[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, counts[3], stride=2, dilate=dilation)
        self.num_channels = width * 8 * block.expansion

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        previous_dilation = self.cur_dilation
        if dilate:
            # replace_stride_with_dilation: the stride becomes dilation; the first block keeps
            # the previous dilation, the following blocks use the new one.
            self.cur_dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                FrozenBatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=self.cur_dilation))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


class Backbone(nn.Module):
    def __init__(self, name, width, dilation):
        super().__init__()
        self.body = ResNetBody(name, width, dilation)
        self.num_channels = self.body.num_channels

    def forward(self, images, mask):
        feat = self.body(images)
        fmask = F.interpolate(mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
        return feat, fmask


# ---------------------------------------------------------------------------------------------
# Position embeddings
# ---------------------------------------------------------------------------------------------


class PositionEmbeddingSine(nn.Module):
    def __init__(self, num_pos_feats, temperature=10000.0, scale=2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, feat, mask):
        not_mask = (~mask).to(feat.dtype)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=feat.dtype)
        dim_t = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_pos_feats)
        px = x[..., None] / dim_t
        py = y[..., None] / dim_t
        # sin on even, cos on odd features, interleaved back into place
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    def __init__(self, num_pos_feats):
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)

    def forward(self, feat, mask):
        b, _, h, w = feat.shape
        x_emb = self.col_embed.weight[:w]  # [w, F]
        y_emb = self.row_embed.weight[:h]  # [h, F]
        pos = torch.cat([x_emb[None].expand(h, w, -1), y_emb[:, None].expand(h, w, -1)], dim=-1)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1).to(feat.dtype)


class Joiner(nn.Sequential):
    """backbone.0 = Backbone (backbone.0.body.*), backbone.1 = position embedding."""

    def forward(self, images, mask):
        feat, fmask = self[0](images, mask)
        return feat, fmask, self[1](feat, fmask)


# ---------------------------------------------------------------------------------------------
# Transformer (sequence-first tensors [L, B, d] as in the original)
# ---------------------------------------------------------------------------------------------


class MultiheadAttention(nn.Module):
    """Same parameters and maths as torch.nn.MultiheadAttention (packed in_proj, q scaled by
    head_dim^-0.5 after the projection, key_padding_mask True = ignore)."""

    def __init__(self, d, nheads):
        super().__init__()
        self.d = d
        self.nheads = nheads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query, key, value, key_padding_mask=None):
        lq, b, d = query.shape
        lk = key.shape[0]
        h = self.nheads
        hd = d // h
        wq, wk, wv = self.in_proj_weight.chunk(3, dim=0)
        bq, bk, bv = self.in_proj_bias.chunk(3, dim=0)
        q = F.linear(query, wq, bq) * (hd ** -0.5)
        k = F.linear(key, wk, bk)
        v = F.linear(value, wv, bv)
        q = q.reshape(lq, b, h, hd).permute(1, 2, 0, 3)  # [b, h, lq, hd]
        k = k.reshape(lk, b, h, hd).permute(1, 2, 0, 3)
        v = v.reshape(lk, b, h, hd).permute(1, 2, 0, 3)
        att = q @ k.transpose(-1, -2)  # [b, h, lq, lk]
        if key_padding_mask is not None:
            att = att.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        att = att.softmax(dim=-1)
        out = (att @ v).permute(2, 0, 1, 3).reshape(lq, b, d)
        return self.out_proj(out)


def with_pos(x, pos):
    return x if pos is None else x + pos


class EncoderLayer(nn.Module):
    def __init__(self, d, nheads, ff, dropout, pre_norm):
        super().__init__()
        self.self_attn = MultiheadAttention(d, nheads)
        self.linear1 = nn.Linear(d, ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def ffn(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src, mask, pos):
        if self.pre_norm:
            s = self.norm1(src)
            qk = with_pos(s, pos)
            src = src + self.dropout1(self.self_attn(qk, qk, s, mask))
            src = src + self.dropout2(self.ffn(self.norm2(src)))
            return src
        qk = with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(qk, qk, src, mask)))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class DecoderLayer(nn.Module):
    def __init__(self, d, nheads, ff, dropout, pre_norm):
        super().__init__()
        self.self_attn = MultiheadAttention(d, nheads)
        self.multihead_attn = MultiheadAttention(d, nheads)
        self.linear1 = nn.Linear(d, ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def ffn(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, tgt, memory, mask, pos, query_pos):
        if self.pre_norm:
            t = self.norm1(tgt)
            qk = with_pos(t, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(qk, qk, t))
            t = self.norm2(tgt)
            tgt = tgt + self.dropout2(
                self.multihead_attn(with_pos(t, query_pos), with_pos(memory, pos), memory, mask))
            tgt = tgt + self.dropout3(self.ffn(self.norm3(tgt)))
            return tgt
        qk = with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(qk, qk, tgt)))
        t2 = self.multihead_attn(with_pos(tgt, query_pos), with_pos(memory, pos), memory, mask)
        tgt = self.norm2(tgt + self.dropout2(t2))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_dim"]
        self.layers = nn.ModuleList([
            EncoderLayer(d, cfg["nheads"], cfg["dim_feedforward"], cfg["dropout"], cfg["pre_norm"])
            for _ in range(cfg["enc_layers"])])
        # the original has an encoder final norm only with pre-norm
        self.norm = nn.LayerNorm(d) if cfg["pre_norm"] else None

    def forward(self, src, mask, pos):
        out = src
        for layer in self.layers:
            out = layer(out, mask, pos)
        if self.norm is not None:
            out = self.norm(out)
        return out


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_dim"]
        self.layers = nn.ModuleList([
            DecoderLayer(d, cfg["nheads"], cfg["dim_feedforward"], cfg["dropout"], cfg["pre_norm"])
            for _ in range(cfg["dec_layers"])])
        self.norm = nn.LayerNorm(d)
        self.return_intermediate = cfg["aux_loss"]

    def forward(self, tgt, memory, mask, pos, query_pos):
        out = tgt
        inter = []
        for layer in self.layers:
            out = layer(out, memory, mask, pos, query_pos)
            if self.return_intermediate:
                # the norm is applied to a copy; the next layer gets the un-normalised state
                inter.append(self.norm(out))
        out = self.norm(out)
        if self.return_intermediate:
            inter[-1] = out
            return torch.stack(inter)  # [L, Q, B, d]
        return out[None]


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos):
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # [hw, B, d]
        pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = query_embed[:, None].repeat(1, b, 1)  # [Q, B, d]
        mask = mask.flatten(1)  # [B, hw]
        tgt = torch.zeros_like(query_pos)
        memory = self.encoder(src, mask, pos)
        hs = self.decoder(tgt, memory, mask, pos, query_pos)
        return hs.transpose(1, 2), memory  # [L, B, Q, d], [hw, B, d]


class MLP(nn.Module):
    def __init__(self, din, dh, dout, n):
        super().__init__()
        dims = [din] + [dh] * (n - 1)
        outs = [dh] * (n - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DETR(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_dim"]
        self.cfg = cfg
        self.transformer = Transformer(cfg)
        self.class_embed = nn.Linear(d, cfg["num_classes"] + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.query_embed = nn.Embedding(cfg["num_queries"], d)
        body = Backbone(cfg["backbone"], cfg["backbone_width"], cfg["dilation"])
        self.input_proj = nn.Conv2d(body.num_channels, d, kernel_size=1)
        if cfg["position_embedding"] == "sine":
            pe = PositionEmbeddingSine(d // 2)
        elif cfg["position_embedding"] == "learned":
            pe = PositionEmbeddingLearned(d // 2)
        else:
            raise ValueError(cfg["position_embedding"])
        self.backbone = Joiner(body, pe)
        # like the original with lr_backbone > 0: only layer2..layer4 of the backbone train
        for n, p in self.backbone.named_parameters():
            if "layer2" not in n and "layer3" not in n and "layer4" not in n:
                p.requires_grad_(False)

    def forward(self, images, mask):
        feat, fmask, pos = self.backbone(images, mask)
        hs, memory = self.transformer(self.input_proj(feat), fmask, self.query_embed.weight, pos)
        logits = self.class_embed(hs)
        boxes = self.bbox_embed(hs).sigmoid()
        return dict(features=feat, feature_mask=fmask, pos=pos, memory=memory, hs=hs,
                    logits=logits, boxes=boxes)


# ---------------------------------------------------------------------------------------------
# Non-trivial random weights
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def make_nontrivial(model, seed, calib_images):
    """Random weights with which the queries disagree (see DESIGN "Making reference fixtures"),
    kept well-conditioned so that float32 rounding is not amplified (noise floor ~1e-5).

    - backbone convolutions: Kaiming-normal (fan_in); every FrozenBN is calibrated on one pass
      of random images: running_mean = batch mean + 0.1 std N(0,1), running_var = batch var x
      U(0.82, 1.22) + 1e-3, weight U(0.6, 1.4) (U(0.2, 0.5) for the last BN of each residual
      branch), bias N(0.05, 0.25);
    - transformer: Xavier-uniform (as the original), then query/key projections x QK_GAIN,
      value projections and out_proj x VO_GAIN, FFN x1.2 with the rows of linear2 centred
      (FFN_ROW_CENTRE); every bias N(0, 0.2); LayerNorm weight U(0.7, 1.3), bias N(0, 0.2).
      (With Xavier alone, or larger value gains, the common component that diffuse attention
      and the FFN add to every token drowns the per-token signal after a few post-norm layers
      and the queries come out identical);
    - input_proj: Kaiming-uniform, bias centring the projected calibration features per channel
      plus N(0, 0.2); query_embed N(0, 1); learned row/col embeddings N(0, POS_STD);
    - heads: class_embed weight std 3/sqrt(d), bias std 0.5; box MLP hidden layers
      Kaiming-normal with bias std 0.2, last layer weight std BOX_GAIN/sqrt(d), bias std 0.5;
      then the last box layer and class_embed are calibrated on the decoder output of the
      calibration images (pre-activation std HEAD_STD, centred on a random target).
    N(m, s) above means mean m, standard deviation s.
    """
    g = torch.Generator().manual_seed(seed)
    d = model.cfg["hidden_dim"]

    def randn(*shape, std=1.0, mean=0.0):
        return mean + std * torch.randn(*shape, generator=g)

    def rand(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    def kaiming_normal(w):
        fan_in = w[0].numel()
        w.copy_(randn(*w.shape, std=math.sqrt(2.0 / fan_in)))

    def xavier_uniform(w):
        fan_out, fan_in = w.shape[0], w[0].numel()
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w.copy_(rand(*w.shape, lo=-a, hi=a))

    # backbone
    for m in model.backbone[0].modules():
        if isinstance(m, nn.Conv2d):
            kaiming_normal(m.weight)
    bns = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    for m in bns:
        m.calibrate = g
    model.backbone[0].body(calib_images)
    for m in bns:
        m.calibrate = None

    # transformer
    for m in model.transformer.modules():
        if isinstance(m, MultiheadAttention):
            xavier_uniform(m.in_proj_weight)
            m.in_proj_weight[: 2 * d] *= QK_GAIN
            m.in_proj_weight[2 * d:] *= VO_GAIN
            m.in_proj_bias.copy_(randn(3 * d, std=0.2))
            xavier_uniform(m.out_proj.weight)
            m.out_proj.weight *= VO_GAIN
            m.out_proj.bias.copy_(randn(d, std=0.2))
        elif isinstance(m, (EncoderLayer, DecoderLayer)):
            for lin in (m.linear1, m.linear2):
                xavier_uniform(lin.weight)
                lin.weight *= 1.2
                lin.bias.copy_(randn(lin.bias.shape[0], std=0.2))
            if FFN_ROW_CENTRE:
                # rows of linear2 sum to zero: the mean of relu(linear1(x)) (the same for every
                # token) no longer adds a common vector to all tokens, which over 6 post-norm
                # layers would drown the per-token signal and make all queries identical
                m.linear2.weight -= m.linear2.weight.mean(dim=1, keepdim=True)
        elif isinstance(m, nn.LayerNorm):
            m.weight.copy_(rand(d, lo=0.7, hi=1.3))
            m.bias.copy_(randn(d, std=0.2))

    w = model.input_proj.weight
    a = math.sqrt(3.0 / w[0].numel())
    w.copy_(rand(*w.shape, lo=-a, hi=a) * math.sqrt(2.0))
    # centre the projected features per channel on the calibration images (then add noise),
    # otherwise a constant per-channel offset dominates the memory and every query sees the same
    feat = model.backbone[0].body(calib_images)
    proj_mean = F.conv2d(feat, w).mean(dim=(0, 2, 3))
    model.input_proj.bias.copy_(-proj_mean + randn(d, std=0.2))
    model.query_embed.weight.copy_(randn(*model.query_embed.weight.shape))
    pe = model.backbone[1]
    if isinstance(pe, PositionEmbeddingLearned):
        pe.row_embed.weight.copy_(randn(*pe.row_embed.weight.shape, std=POS_STD))
        pe.col_embed.weight.copy_(randn(*pe.col_embed.weight.shape, std=POS_STD))

    ce = model.class_embed
    ce.weight.copy_(randn(*ce.weight.shape, std=3.0 / math.sqrt(d)))
    ce.bias.copy_(randn(ce.bias.shape[0], std=0.5))
    layers = model.bbox_embed.layers
    for lin in layers[:-1]:
        kaiming_normal(lin.weight)
        lin.bias.copy_(randn(lin.bias.shape[0], std=0.2))
    layers[-1].weight.copy_(randn(*layers[-1].weight.shape, std=BOX_GAIN / math.sqrt(d)))
    layers[-1].bias.copy_(randn(4, std=0.5))

    # Calibrate the heads on the decoder output for the calibration images, so that boxes are
    # not saturated by the sigmoid and the queries spread: per output, rescale the last layer so
    # the pre-activation has std HEAD_STD over (layer, image, query) and shift its mean to a
    # target (boxes: logit of (0.5, 0.5, 0.25, 0.25) + N(0, 0.3); classes: N(0, 0.5)).
    mask = torch.zeros(calib_images.shape[0], *calib_images.shape[-2:], dtype=torch.bool)
    hs = model(calib_images, mask)["hs"]  # [L, B, Q, d]
    h = hs
    for lin in layers[:-1]:
        h = F.relu(lin(h))
    centre = torch.logit(torch.tensor([0.5, 0.5, 0.25, 0.25])) + randn(4, std=0.3)
    for lin, x, target in ((layers[-1], h, centre),
                           (ce, hs, randn(ce.bias.shape[0], std=0.5))):
        pre = lin(x).flatten(0, 2)  # [L*B*Q, out]
        gain = HEAD_STD / pre.std(dim=0)
        lin.weight.mul_(gain[:, None])
        lin.bias.copy_(target - (pre.mean(dim=0) - lin.bias) * gain)


# ---------------------------------------------------------------------------------------------
# Inputs, layouts, checks
# ---------------------------------------------------------------------------------------------


def make_batch(sizes, g):
    hmax = max(h for h, _ in sizes)
    wmax = max(w for _, w in sizes)
    images = torch.zeros(len(sizes), 3, hmax, wmax)
    mask = torch.ones(len(sizes), hmax, wmax, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        images[i, :, :h, :w] = torch.randn(3, h, w, generator=g)
        mask[i, :h, :w] = False
    return images, mask


def official_to_hf(sd):
    """Official DETR names -> Hugging Face DetrForObjectDetection (timm backbone) names.
    Raises KeyError for a tensor the HF layout cannot hold."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if k.startswith("backbone.0.body."):
            out["model.backbone.conv_encoder.model." + k[len("backbone.0.body."):]] = v
        elif k == "backbone.1.row_embed.weight":
            out["model.backbone.position_embedding.row_embeddings.weight"] = v
        elif k == "backbone.1.col_embed.weight":
            out["model.backbone.position_embedding.column_embeddings.weight"] = v
        elif k.startswith("input_proj."):
            out["model.input_projection." + parts[-1]] = v
        elif k == "query_embed.weight":
            out["model.query_position_embeddings.weight"] = v
        elif k.startswith("class_embed."):
            out["class_labels_classifier." + parts[-1]] = v
        elif k.startswith("bbox_embed.layers."):
            out["bbox_predictor." + k[len("bbox_embed."):]] = v
        elif k.startswith("transformer.decoder.norm."):
            out["model.decoder.layernorm." + parts[-1]] = v
        elif k.startswith("transformer.encoder.layers.") or k.startswith("transformer.decoder.layers."):
            side = parts[1]  # encoder | decoder
            prefix = f"model.{side}.layers.{parts[3]}."
            sub, leaf = parts[4], parts[-1]
            if sub in ("self_attn", "multihead_attn"):
                att = "self_attn" if sub == "self_attn" else "encoder_attn"
                if parts[5] == "out_proj":
                    out[prefix + f"{att}.out_proj.{leaf}"] = v
                else:
                    kind = "weight" if parts[5] == "in_proj_weight" else "bias"
                    for name, chunk in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                        out[prefix + f"{att}.{name}.{kind}"] = chunk.clone().contiguous()
            else:
                names = {"linear1": "fc1", "linear2": "fc2", "norm1": "self_attn_layer_norm"}
                if side == "encoder":
                    names["norm2"] = "final_layer_norm"
                else:
                    names["norm2"] = "encoder_attn_layer_norm"
                    names["norm3"] = "final_layer_norm"
                out[prefix + f"{names[sub]}.{leaf}"] = v
        else:
            raise KeyError(f"no Hugging Face name for {k}")
    return out


def hf_representable(cfg):
    # HF's DetrConfig has no pre-norm (its layers are post-norm only, no encoder final norm).
    return not cfg["pre_norm"]


def read_tsv(name):
    for d in REFERENCE_DIRS:
        p = d / name
        if p.exists():
            rows = {}
            for line in p.read_text().splitlines():
                if line.strip():
                    cols = line.split("\t")
                    rows[cols[0]] = json.loads(cols[1])
            return rows
    return None


def check_layout_against_reference():
    """The r50 preset's official names/shapes and their HF mapping equal the reference TSVs."""
    official = read_tsv("detr_r50_state_dict_keys.tsv")
    hf = read_tsv("hf_detr_r50_timm_saved_keys.tsv")
    if official is None or hf is None:
        print("WARNING: reference TSVs not found; layout not verified")
        return
    for ref, what in ((official, "official"), (hf, "hf")):
        ncls = (ref.get("class_embed.weight") or ref.get("class_labels_classifier.weight"))[0] - 1
        cfg = dict(PRESETS["r50"], num_classes=ncls)
        with torch.device("meta"):
            sd = DETR(cfg).state_dict()
        if what == "hf":
            sd = official_to_hf(sd)
        mine = {k: list(v.shape) for k, v in sd.items()}
        missing = sorted(set(ref) - set(mine))
        extra = sorted(set(mine) - set(ref))
        shape = sorted(k for k in set(ref) & set(mine) if ref[k] != mine[k])
        if missing or extra or shape:
            raise SystemExit(f"{what} layout differs from reference: missing {missing[:5]}, "
                             f"extra {extra[:5]}, shape {shape[:5]}")
        print(f"layout check: {what} r50 keys and shapes == reference ({len(ref)} tensors)")


@torch.no_grad()
def self_checks():
    """Our attention == torch.nn.MultiheadAttention; our ResNet == torchvision's."""
    torch.manual_seed(0)
    d, h = 32, 4
    mine = MultiheadAttention(d, h)
    nn.init.normal_(mine.in_proj_bias)
    nn.init.normal_(mine.out_proj.bias)
    ref = nn.MultiheadAttention(d, h)
    ref.load_state_dict(mine.state_dict())
    q, k, v = torch.randn(7, 2, d), torch.randn(9, 2, d), torch.randn(9, 2, d)
    m = torch.zeros(2, 9, dtype=torch.bool)
    m[1, 6:] = True
    diff = (mine(q, k, v, m) - ref(q, k, v, key_padding_mask=m, need_weights=False)[0]).abs().max()
    assert diff < 1e-5, diff
    print(f"self-check: attention vs torch.nn.MultiheadAttention max abs diff {diff:.2e}")
    try:
        import torchvision
        from torchvision.ops import FrozenBatchNorm2d as TvFrozenBN
    except ImportError:
        print("self-check: torchvision missing, ResNet not cross-checked")
        return
    for name, dil in (("resnet18", False), ("resnet50", True)):
        body = ResNetBody(name, 64, dil)
        for mod in body.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight)
        g = torch.Generator().manual_seed(1)
        bns = [mm for mm in body.modules() if isinstance(mm, FrozenBatchNorm2d)]
        for mm in bns:
            mm.calibrate = g
        body(torch.randn(2, 3, 96, 96, generator=g))
        for mm in bns:
            mm.calibrate = None
        kwargs = {"replace_stride_with_dilation": [False, False, True]} if dil else {}
        tv = getattr(torchvision.models, name)(weights=None, norm_layer=TvFrozenBN, **kwargs).eval()
        res = tv.load_state_dict(body.state_dict(), strict=False)
        assert set(res.missing_keys) == {"fc.weight", "fc.bias"} and not res.unexpected_keys, res
        x = torch.randn(2, 3, 100, 132, generator=g)
        t = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        y = body(x)
        assert y.shape == t.shape, (y.shape, t.shape)
        rel = ((y - t).abs().max() / t.abs().max()).item()
        assert rel < 1e-5, rel
        print(f"self-check: {name}{' DC5' if dil else ''} vs torchvision {list(y.shape)} "
              f"max rel diff {rel:.2e}")


def box_cxcywh_to_xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def giou(a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None] - inter
    iou = inter / union
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


def report_spread(name, k, out, cfg, g):
    """How different the queries are, and whether Hungarian matching is stable."""
    boxes, logits = out["boxes"], out["logits"]
    fb, fl = boxes[-1], logits[-1]  # [B, Q, 4], [B, Q, C+1]
    box_std = fb.std(dim=1).mean().item()
    logit_std = fl.std(dim=1).mean().item()
    dmin = min(torch.cdist(fb[i], fb[i], p=1).add(torch.eye(fb.shape[1]) * 1e9).min().item()
               for i in range(fb.shape[0]))
    labels = fl.argmax(-1)
    nlab = [len(set(labels[i].tolist())) for i in range(labels.shape[0])]
    msg = (f"{name} batch {k}: final-layer box std over queries {box_std:.3f}, min pairwise L1 "
           f"between query boxes {dmin:.3f}, logit std over queries {logit_std:.3f}, "
           f"distinct argmax classes per image {nlab}")
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        print(msg)
        return
    stable = total = 0
    for layer in range(boxes.shape[0]):
        for i in range(boxes.shape[1]):
            nt = 3
            tb = torch.cat([torch.rand(nt, 2, generator=g) * 0.6 + 0.2,
                            torch.rand(nt, 2, generator=g) * 0.3 + 0.05], dim=1)
            tl = torch.randint(0, cfg["num_classes"], (nt,), generator=g)
            prob = logits[layer, i].double().softmax(-1)
            pb = boxes[layer, i].double()
            c = (5 * torch.cdist(pb, tb.double(), p=1) - prob[:, tl]
                 - 2 * giou(box_cxcywh_to_xyxy(pb), box_cxcywh_to_xyxy(tb.double())))
            base = linear_sum_assignment(c.numpy())
            for _ in range(20):
                pert = c * (1 + 1e-5 * torch.randn(c.shape, generator=g, dtype=torch.float64))
                r = linear_sum_assignment(pert.numpy())
                total += 1
                stable += int((r[0] == base[0]).all() and (r[1] == base[1]).all())
    print(msg + f"; Hungarian (3 random targets) unchanged under 1e-5 relative cost noise in "
          f"{stable}/{total} trials")


def rel_diff(a, b):
    """max |a - b| / max |b| over the tensor."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def count_params(model):
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def write_fixture(name, cfg, batches, outdir, seed, float64_check=True):
    outdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = DETR(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    hc, wc = max(h for h, _ in batches[0]), max(w for _, w in batches[0])
    calib = torch.randn(2, 3, min(hc, 256), min(wc, 256), generator=g)
    make_nontrivial(model, seed + 2, calib)
    total, trainable = count_params(model)
    sd = {k: v.detach().clone().float().contiguous() for k, v in model.state_dict().items()}
    print(f"{name}: {len(sd)} state tensors, {total:,} parameters, {trainable:,} trainable "
          f"(stem and layer1 frozen), {sum(v.numel() for v in sd.values()):,} numbers in the "
          f"state dict")

    with open(outdir / f"{name}.json", "w") as f:
        json.dump({k: cfg[k] for k in CONFIG_KEYS}, f, indent=2)
        f.write("\n")
    torch.save({"model": sd}, outdir / f"{name}.pth")
    if hf_representable(cfg):
        save_file(official_to_hf(sd), str(outdir / f"{name}_hf.safetensors"),
                  metadata={"format": "pt"})
    else:
        print(f"{name}: no _hf.safetensors (pre-norm cannot be represented in HF's DETR)")
    if name == "tiny_r50dc5":
        # The backbone alone in torchvision's ResNet layout (a bare state dict with `fc.*` and
        # BatchNorm's `num_batches_tracked`, which DETR ignores), for backbone-only loading.
        tv = {}
        for k, v in sd.items():
            if k.startswith("backbone.0.body."):
                tv[k[len("backbone.0.body."):]] = v
                if k.endswith("running_var"):
                    tv[k[len("backbone.0.body."):-len("running_var")] + "num_batches_tracked"] = \
                        torch.tensor(0, dtype=torch.long)
        c = model.backbone.num_channels if hasattr(model.backbone, "num_channels") else \
            sd["input_proj.weight"].shape[1]
        gfc = torch.Generator().manual_seed(seed + 5)
        tv["fc.weight"] = torch.randn(10, c, generator=gfc)
        tv["fc.bias"] = torch.randn(10, generator=gfc)
        torch.save(tv, outdir / f"{name}_torchvision.pth")

    io = {}
    gi = torch.Generator().manual_seed(seed + 3)
    gm = torch.Generator().manual_seed(seed + 4)
    model64 = None
    with torch.no_grad():
        for k, sizes in enumerate(batches):
            images, mask = make_batch(sizes, gi)
            out = model(images, mask)
            for key, t in (("images", images), ("mask", mask), ("features", out["features"]),
                           ("feature_mask", out["feature_mask"]), ("pos", out["pos"]),
                           ("memory", out["memory"]), ("hs", out["hs"]),
                           ("logits", out["logits"]), ("boxes", out["boxes"])):
                t = t.to(torch.uint8) if t.dtype == torch.bool else t.float()
                io[f"{key}_{k}"] = t.contiguous()
            for key, t in out.items():
                if t.is_floating_point():
                    assert torch.isfinite(t).all(), f"{name} {key}_{k} has NaN/inf"
            report_spread(name, k, out, cfg, gm)
            if float64_check:
                if model64 is None:
                    import copy
                    model64 = copy.deepcopy(model).double()
                o64 = model64(images.double(), mask)
                print(f"{name} batch {k}: float32 vs float64 max rel diff (max|d|/max|ref|): "
                      + ", ".join(f"{key} {rel_diff(out[key], o64[key]):.2e}"
                                  for key in ("features", "memory", "hs", "logits", "boxes")))
    save_file(io, str(outdir / f"{name}_io.safetensors"), metadata={"format": "pt"})
    for k, t in io.items():
        print(f"  {name}_io {k}: {list(t.shape)} {str(t.dtype).replace('torch.', '')}")
    for p in sorted(outdir.glob(f"{name}*")):
        print(f"  {p.relative_to(outdir.parent) if outdir.parent in p.parents else p}: "
              f"{p.stat().st_size / 1e6:.2f} MB")
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--r50", metavar="OUTDIR", help="build the full r50 preset into OUTDIR")
    ap.add_argument("--float64-check", action="store_true",
                    help="with --r50: rerun in float64 and print the float32 noise floor")
    ap.add_argument("--out", default=str(FIXTURE_DIR), help="fixture directory (tiny fixtures)")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)

    check_layout_against_reference()
    self_checks()
    if args.r50:
        cfg = PRESETS["r50"]
        print("r50: the original reports 'number of params: 41302368' for this preset")
        write_fixture("r50", cfg, BATCHES_R50, Path(args.r50), seed=50,
                      float64_check=args.float64_check)
        return
    for i, name in enumerate(("tiny_r18", "tiny_r50dc5")):
        write_fixture(name, PRESETS[name], BATCHES_TINY, Path(args.out), seed=1000 * (i + 1))


if __name__ == "__main__":
    sys.exit(main())
