"""Writes Tests/GraftDetectionTests/Fixtures/fcos/fcos.json: torchvision's FCOS definitions on
small random inputs (sigmoid focal loss, GIoU loss, BCE with logits, batched NMS, anchors, target
assignment, the three head losses and post-processing), for Graft's parity tests.

Run: Tools/.venv/bin/python Tools/make_fcos_fixtures.py
"""

import json
import math
import os
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

torch.manual_seed(12)
out = {"torch": torch.__version__, "torchvision": torchvision.__version__}


def flat(t):
    # 9 significant digits round-trip float32 exactly.
    return [float("%.9g" % v) for v in t.detach().double().flatten().tolist()]


def random_boxes(n, size, low=4.0, high=60.0):
    xy = torch.rand(n, 2) * (size - high)
    wh = low + torch.rand(n, 2) * (high - low)
    return torch.cat([xy, xy + wh], dim=1)


# Losses.
logits = torch.randn(6, 3) * 2
targets = (torch.rand(6, 3) > 0.6).float()
out["focal"] = {
    "logits": flat(logits), "targets": flat(targets), "shape": [6, 3],
    "none": flat(sigmoid_focal_loss(logits, targets, 0.25, 2.0, "none")),
    "sum": float(sigmoid_focal_loss(logits, targets, 0.25, 2.0, "sum")),
    "mean": float(sigmoid_focal_loss(logits, targets, 0.25, 2.0, "mean")),
}
b1 = random_boxes(6, 64.0)
b2 = b1 + torch.randn(6, 4) * 6
b2[:, 2:] = torch.maximum(b2[:, 2:], b2[:, :2] + 1)
b2[5] = torch.tensor([100.0, 100.0, 110.0, 120.0])  # disjoint from b1[5]
out["giou"] = {"boxes1": flat(b1), "boxes2": flat(b2),
               "none": flat(generalized_box_iou_loss(b1, b2, reduction="none"))}
bl = torch.randn(7) * 2
bt = torch.rand(7)
out["bce"] = {"logits": flat(bl), "targets": flat(bt),
              "sum": float(F.binary_cross_entropy_with_logits(bl, bt, reduction="sum"))}

# Batched NMS.
nb = random_boxes(40, 100.0, 10, 40)
ns = torch.rand(40)
nl = torch.randint(0, 3, (40,))
out["nms"] = {"boxes": flat(nb), "scores": flat(ns), "labels": nl.tolist(),
              "keep06": batched_nms(nb, ns, nl, 0.6).tolist(),
              "keep03": batched_nms(nb, ns, nl, 0.3).tolist()}

# Anchors, assignment, losses and post-processing on a 2-image batch.
strides = [8, 16, 32, 64]
size = (128, 96)  # height, width
grids = [(size[0] // s, size[1] // s) for s in strides]
num_classes = 3
gen = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
images = ImageList(torch.zeros(2, 3, *size), [size, size])
feats = [torch.zeros(2, 1, h, w) for h, w in grids]
anchors = gen(images, feats)
num_per_level = [h * w for h, w in grids]
gt = [
    {"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0], [20.0, 20.0, 90.0, 110.0],
                            [30.0, 25.0, 45.0, 38.0], [0.0, 0.0, 95.0, 127.0]]),
     "labels": torch.tensor([0, 2, 1, 1])},
    {"boxes": torch.tensor([[50.0, 60.0, 70.0, 75.0], [5.0, 70.0, 60.0, 120.0]]),
     "labels": torch.tensor([2, 0])},
]
captured = {}


def capture(targets, head_outputs, anchors, matched_idxs):
    captured["matched"] = matched_idxs
    return {}


fake = SimpleNamespace(center_sampling_radius=1.5, head=SimpleNamespace(compute_loss=capture))
FCOS.compute_loss(fake, gt, None, anchors, num_per_level)
total = sum(num_per_level)
cls = torch.randn(2, total, num_classes) * 2 - 2
reg = torch.rand(2, total, 4) * 3
ctr = torch.randn(2, total, 1)
head = FCOSHead(32, 1, num_classes, num_convs=1)
losses = head.compute_loss(gt, {"cls_logits": cls, "bbox_regression": reg, "bbox_ctrness": ctr},
                           anchors, captured["matched"])
out["fcos"] = {
    "image_size": list(size), "strides": strides, "num_classes": num_classes,
    "anchors": flat(anchors[0]),
    "gt": [{"boxes": flat(t["boxes"]), "labels": t["labels"].tolist()} for t in gt],
    "matched": [m.tolist() for m in captured["matched"]],
    "cls_logits": flat(cls), "bbox_regression": flat(reg), "bbox_ctrness": flat(ctr),
    "loss_classification": float(losses["classification"]),
    "loss_bbox_regression": float(losses["bbox_regression"]),
    "loss_bbox_ctrness": float(losses["bbox_ctrness"]),
}

# Post-processing: torchvision's FCOS.postprocess_detections with Graft's default threshold and
# a small top-k and detection cap so that both limits act.
post = SimpleNamespace(box_coder=det_utils.BoxLinearCoder(normalize_by_size=True),
                       score_thresh=0.05, topk_candidates=40, nms_thresh=0.6,
                       detections_per_img=25)
cls_p = torch.randn(2, total, num_classes) * 2 - 1
ctr_p = torch.randn(2, total, 1)
split = lambda t: list(t.split(num_per_level, dim=1))
dets = FCOS.postprocess_detections(
    post, {"cls_logits": split(cls_p), "bbox_regression": split(reg), "bbox_ctrness": split(ctr_p)},
    [list(a.split(num_per_level)) for a in anchors], [(120, 90), size])
out["postprocess"] = {
    "image_sizes": [[120, 90], list(size)], "score_thresh": 0.05, "topk": 40, "nms": 0.6,
    "max_detections": 25, "cls_logits": flat(cls_p), "bbox_ctrness": flat(ctr_p),
    "detections": [{"boxes": flat(d["boxes"]), "scores": flat(d["scores"]),
                    "labels": d["labels"].tolist()} for d in dets],
}

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "GraftDetectionTests", "Fixtures",
                    "fcos", "fcos.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes;",
      [len(d["boxes"]) for d in dets], "detections;",
      [int((m >= 0).sum()) for m in captured["matched"]], "positives")

# Transposed convolution (Graft's convTranspose2d), written to GraftTensor's fixtures.
ct = {}
for name, (cin, cout, k, s, p, op) in {"k3s2p1op1": (3, 4, 3, 2, 1, 1),
                                       "k2s2": (3, 2, 2, 2, 0, 0)}.items():
    x = torch.randn(2, cin, 4, 5)
    w = torch.randn(cin, cout, k, k)
    b = torch.randn(cout)
    y = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op)
    ct[name] = {"x": flat(x), "x_shape": list(x.shape), "w": flat(w), "w_shape": list(w.shape),
                "b": flat(b), "stride": s, "padding": p, "output_padding": op,
                "y": flat(y), "y_shape": list(y.shape)}
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "GraftTensorTests", "Fixtures",
                    "conv_transpose2d.json")
with open(path, "w") as f:
    json.dump(ct, f)
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")

# The head's forward pass (torchvision's FCOS heads, GroupNorm with 8 groups for 8 channels) and
# ViTDet's simple feature pyramid (detectron2's layers rebuilt in torch: detectron2 is not a
# dependency), every tensor randomised so that norms and biases matter. Keys are Graft's names.
from functools import partial

from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSRegressionHead

gn = partial(torch.nn.GroupNorm, 8)
cls_head = FCOSClassificationHead(8, 1, 3, num_convs=2, norm_layer=gn)
reg_head = FCOSRegressionHead(8, 1, num_convs=2, norm_layer=gn)
with torch.no_grad():
    for p in list(cls_head.parameters()) + list(reg_head.parameters()):
        p.copy_(torch.randn_like(p) * 0.3)
params = {}
for prefix, tower in (("cls_tower", cls_head.conv), ("bbox_tower", reg_head.conv)):
    for i in range(2):
        params[f"{prefix}.{i}.weight"] = flat(tower[3 * i].weight)
        params[f"{prefix}.{i}.bias"] = flat(tower[3 * i].bias)
        params[f"{prefix}.{i}.norm.weight"] = flat(tower[3 * i + 1].weight)
        params[f"{prefix}.{i}.norm.bias"] = flat(tower[3 * i + 1].bias)
for name, conv in (("cls_logits", cls_head.cls_logits), ("bbox_reg", reg_head.bbox_reg),
                   ("bbox_ctrness", reg_head.bbox_ctrness)):
    params[f"{name}.weight"] = flat(conv.weight)
    params[f"{name}.bias"] = flat(conv.bias)
feats = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 3)]
with torch.no_grad():
    reg_out, ctr_out = reg_head(feats)
    head_out = {"params": params, "inputs": [flat(f) for f in feats],
                "input_shapes": [list(f.shape) for f in feats], "cls_logits": flat(cls_head(feats)),
                "bbox_regression": flat(reg_out), "bbox_ctrness": flat(ctr_out)}


class ChannelLayerNorm(torch.nn.Module):
    """detectron2's LayerNorm: over channels of [B, C, H, W], eps 1e-6."""

    def __init__(self, c):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(c) * 0.3 + 1)
        self.bias = torch.nn.Parameter(torch.randn(c) * 0.3)

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


dim, out_ch = 8, 6
pyramid_params = {}
stages = []
for stride in (4, 8, 16, 32):
    name = f"stage{int(math.log2(stride))}"
    layers, width = [], dim
    if stride == 4:
        up1 = torch.nn.ConvTranspose2d(dim, dim // 2, 2, 2)
        ln = ChannelLayerNorm(dim // 2)
        up2 = torch.nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)
        layers += [up1, ln, torch.nn.GELU(), up2]
        width = dim // 4
        for n, m in ((f"{name}.up1", up1), (f"{name}.up1.norm", ln), (f"{name}.up2", up2)):
            pyramid_params[f"{n}.weight"], pyramid_params[f"{n}.bias"] = m.weight, m.bias
    elif stride == 8:
        up1 = torch.nn.ConvTranspose2d(dim, dim // 2, 2, 2)
        layers.append(up1)
        width = dim // 2
        pyramid_params[f"{name}.up1.weight"], pyramid_params[f"{name}.up1.bias"] = up1.weight, up1.bias
    elif stride == 32:
        layers.append(torch.nn.MaxPool2d(2, 2))
    for part, k, cin in (("lateral", 1, width), ("output", 3, out_ch)):
        conv = torch.nn.Conv2d(cin, out_ch, k, padding=k // 2, bias=False)
        ln = ChannelLayerNorm(out_ch)
        layers += [conv, ln]
        pyramid_params[f"{name}.{part}.weight"] = conv.weight
        pyramid_params[f"{name}.{part}.norm.weight"] = ln.weight
        pyramid_params[f"{name}.{part}.norm.bias"] = ln.bias
    stages.append(torch.nn.Sequential(*layers))
x = torch.randn(2, dim, 3, 4)
with torch.no_grad():
    maps = [s(x) for s in stages]
pyramid_out = {"params": {k: flat(v) for k, v in pyramid_params.items()}, "input": flat(x),
               "input_shape": list(x.shape), "outputs": [flat(m) for m in maps],
               "output_shapes": [list(m.shape) for m in maps]}
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "GraftDetectionTests", "Fixtures",
                    "fcos", "modules.json")
with open(path, "w") as f:
    json.dump({"head": head_out, "pyramid": pyramid_out}, f)
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
