#!/usr/bin/env python3
"""Detection-score fixtures for Tests/GraftDetectionTests (graft score detections).

Writes, under Tests/GraftDetectionTests/Fixtures/scores/, for each case NAME:
  NAME_gt.json     COCO ground truth (images, annotations with bbox/area/iscrowd, categories)
  NAME_dt.json     COCO results ([{"image_id", "category_id", "bbox", "score"}])
  NAME_expected.json
                   {"coco": the twelve COCOeval(iouType="bbox").stats of pycocotools,
                    "voc": {"offset0": ..., "offset1": ...}: VOC AP per category (area and
                    11-point) and their means, computed below as the VOC devkit's Python port
                    voc_eval.py does (boxes as corners x, y, x + w, y + h; "+ offset" on every
                    extent; crowd regions and "difficult": 1 count as difficult)}

Cases:
  mixed    hand-placed cases: crowds (matched without penalty, several detections inside one),
           an "ignore": 1 key without iscrowd (pycocotools' box evaluation disregards it), an
           annotation with id 0 (pycocotools then counts its match as none), areas exactly 32**2
           and 96**2, an area field unlike the box's, empty images, images without detections,
           detections on images without ground truth, a category without ground truth, a
           category with only a crowd, tied scores within and across images, > 100 detections
           on one image and category, plus seeded random images.
  random1, random2
           seeded random scenes, jittered and spurious detections, scores rounded to 2 decimals.
  labelme  the ground truth of Debian's labelme-examples (instance_segmentation/
           data_dataset_coco/annotations.json, copied as labelme_gt.json; image and
           annotation ids start at 0) with seeded jittered detections.

Needs `pip install pycocotools`. Run from the repository root:
  Tools/.venv/bin/python Tools/make_detection_score_fixtures.py
"""

import contextlib
import io
import json
import os
import random

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "GraftDetectionTests", "Fixtures", "scores")
LABELME = os.path.join(ROOT, "Tests", "GraftDetectionTests", "Fixtures", "labelme",
                       "annotations.json")


def coco_stats(gt_path, dt_path):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(x) for x in e.stats]


def voc_ap(rec, prec, use_07_metric):
    # voc_eval.py's voc_ap.
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_scores(gt, dts, offset, ovthresh=0.5):
    # voc_eval.py per category, with a stable sort of the scores (its argsort's ties are
    # unspecified) and categories without countable ground truth left out of the mean.
    aps, aps11 = {}, {}
    for cat in sorted(c["id"] for c in gt["categories"]):
        recs = {}
        npos = 0
        for a in gt["annotations"]:
            if a["category_id"] != cat:
                continue
            x, y, w, h = a["bbox"]
            hard = bool(a.get("iscrowd", 0)) or bool(a.get("difficult", 0))
            r = recs.setdefault(a["image_id"], {"bbox": [], "difficult": [], "det": []})
            r["bbox"].append([x, y, x + w, y + h])
            r["difficult"].append(hard)
            r["det"].append(False)
            npos += 0 if hard else 1
        if npos == 0:
            aps[cat] = aps11[cat] = -1.0
            continue
        found = [d for d in dts if d["category_id"] == cat]
        conf = np.array([d["score"] for d in found], dtype=np.float64)
        order = np.argsort(-conf, kind="mergesort")
        tp = np.zeros(len(found))
        fp = np.zeros(len(found))
        for k, idx in enumerate(order):
            d = found[idx]
            x, y, w, h = d["bbox"]
            bb = np.array([x, y, x + w, y + h], dtype=np.float64)
            r = recs.get(d["image_id"], {"bbox": [], "difficult": [], "det": []})
            ovmax = -np.inf
            BBGT = np.array(r["bbox"], dtype=np.float64)
            if BBGT.size > 0:
                ixmin = np.maximum(BBGT[:, 0], bb[0])
                iymin = np.maximum(BBGT[:, 1], bb[1])
                ixmax = np.minimum(BBGT[:, 2], bb[2])
                iymax = np.minimum(BBGT[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin + offset, 0.0)
                ih = np.maximum(iymax - iymin + offset, 0.0)
                inters = iw * ih
                uni = ((bb[2] - bb[0] + offset) * (bb[3] - bb[1] + offset)
                       + (BBGT[:, 2] - BBGT[:, 0] + offset) * (BBGT[:, 3] - BBGT[:, 1] + offset)
                       - inters)
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > ovthresh:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        tp[k] = 1.0
                        r["det"][jmax] = True
                    else:
                        fp[k] = 1.0
            else:
                fp[k] = 1.0
        fp = np.cumsum(fp)
        tp = np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[cat] = voc_ap(rec, prec, False)
        aps11[cat] = voc_ap(rec, prec, True)

    def mean(values):
        defined = [v for v in values.values() if v > -1]
        return float(np.mean(defined)) if defined else -1.0

    return {"ap": {str(k): v for k, v in aps.items()},
            "ap11": {str(k): v for k, v in aps11.items()},
            "mAP": mean(aps), "mAP11": mean(aps11)}


def jitter(rng, box, amount):
    x, y, w, h = box
    return [round(x + rng.uniform(-amount, amount) * w, 2),
            round(y + rng.uniform(-amount, amount) * h, 2),
            round(max(0.5, w * (1 + rng.uniform(-amount, amount))), 2),
            round(max(0.5, h * (1 + rng.uniform(-amount, amount))), 2)]


def random_scene(rng, image_ids, cat_ids, first_ann_id, size=320):
    images, anns, dts = [], [], []
    ann_id = first_ann_id
    for img in image_ids:
        images.append({"id": img, "file_name": f"{img}.png", "width": size, "height": size})
        for _ in range(rng.randint(0, 7)):
            # Sides spread over all three area ranges.
            w = round(rng.choice([rng.uniform(4, 30), rng.uniform(30, 95), rng.uniform(95, 200)]), 1)
            h = round(w * rng.uniform(0.5, 1.5), 1)
            x = round(rng.uniform(0, size - w), 1)
            y = round(rng.uniform(0, max(1, size - h)), 1)
            crowd = 1 if rng.random() < 0.08 else 0
            cat = rng.choice(cat_ids)
            anns.append({"id": ann_id, "image_id": img, "category_id": cat,
                         "bbox": [x, y, w, h], "area": round(w * h, 2), "iscrowd": crowd})
            ann_id += 1
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                dts.append({"image_id": img, "category_id": cat if rng.random() < 0.9
                            else rng.choice(cat_ids),
                            "bbox": jitter(rng, [x, y, w, h], rng.choice([0.02, 0.1, 0.3])),
                            "score": round(rng.random(), 2)})
        for _ in range(rng.randint(0, 3)):
            w = round(rng.uniform(5, 150), 1)
            h = round(rng.uniform(5, 150), 1)
            dts.append({"image_id": img, "category_id": rng.choice(cat_ids),
                        "bbox": [round(rng.uniform(0, size - w), 1),
                                 round(rng.uniform(0, size - h), 1), w, h],
                        "score": round(rng.random(), 2)})
    return images, anns, dts


def mixed_case():
    rng = random.Random(12)
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"},
            {"id": 3, "name": "triangle"}, {"id": 7, "name": "no ground truth"},
            {"id": 9, "name": "crowd only"}]
    images = [{"id": i, "file_name": f"{i}.png", "width": 400, "height": 400}
              for i in (40, 3, 17, 8, 25, 1)]
    anns = [
        # Image 40: a crowd with three detections inside, a regular box beside it.
        {"id": 10, "image_id": 40, "category_id": 1, "bbox": [10, 10, 200, 200],
         "area": 40000.0, "iscrowd": 1},
        {"id": 11, "image_id": 40, "category_id": 1, "bbox": [250, 250, 60, 60],
         "area": 3600.0, "iscrowd": 0},
        # "ignore": 1 without iscrowd: still counted by pycocotools' bbox evaluation.
        {"id": 12, "image_id": 40, "category_id": 2, "bbox": [300, 20, 40, 40],
         "area": 1600.0, "iscrowd": 0, "ignore": 1},
        # Image 3: areas exactly on the range boundaries, an area unlike its box's, id 0.
        {"id": 0, "image_id": 3, "category_id": 2, "bbox": [0, 0, 32, 32],
         "area": 1024.0, "iscrowd": 0},
        {"id": 13, "image_id": 3, "category_id": 2, "bbox": [100, 100, 96, 96],
         "area": 9216.0, "iscrowd": 0},
        {"id": 14, "image_id": 3, "category_id": 3, "bbox": [200, 200, 120, 120],
         "area": 500.0, "iscrowd": 0},
        # Image 17: ground truth, no detections at all.
        {"id": 15, "image_id": 17, "category_id": 1, "bbox": [50, 50, 20, 20],
         "area": 400.0, "iscrowd": 0},
        {"id": 16, "image_id": 17, "category_id": 3, "bbox": [150, 50, 150, 100],
         "area": 15000.0, "iscrowd": 0},
        # Image 8: a crowd of category 9 only.
        {"id": 17, "image_id": 8, "category_id": 9, "bbox": [0, 0, 100, 100],
         "area": 10000.0, "iscrowd": 1},
        # Image 25: many small boxes of one category (over 100 detections below).
        *[{"id": 100 + i, "image_id": 25, "category_id": 2,
           "bbox": [(i % 12) * 32 + 2, (i // 12) * 32 + 2, 20, 20], "area": 400.0,
           "iscrowd": 0} for i in range(60)],
    ]
    dts = [
        {"image_id": 40, "category_id": 1, "bbox": [20, 20, 50, 50], "score": 0.9},
        {"image_id": 40, "category_id": 1, "bbox": [100, 100, 50, 50], "score": 0.8},
        {"image_id": 40, "category_id": 1, "bbox": [150, 30, 40, 40], "score": 0.8},
        {"image_id": 40, "category_id": 1, "bbox": [252, 251, 58, 60], "score": 0.7},
        {"image_id": 40, "category_id": 1, "bbox": [245, 245, 60, 60], "score": 0.7},
        {"image_id": 40, "category_id": 2, "bbox": [302, 22, 40, 38], "score": 0.6},
        {"image_id": 3, "category_id": 2, "bbox": [1, 1, 31, 32], "score": 0.7},
        {"image_id": 3, "category_id": 2, "bbox": [102, 98, 96, 96], "score": 0.7},
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 33, 33], "score": 0.95},
        {"image_id": 3, "category_id": 3, "bbox": [205, 205, 110, 118], "score": 0.5},
        {"image_id": 3, "category_id": 7, "bbox": [5, 5, 50, 50], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [5, 5, 200, 200], "score": 0.3},
        {"image_id": 8, "category_id": 9, "bbox": [10, 10, 30, 30], "score": 0.4},
        {"image_id": 8, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.4},
    ]
    for i in range(130):
        g = 100 + (i % 60)
        a = next(x for x in anns if x["id"] == g)
        dts.append({"image_id": 25, "category_id": 2, "bbox": jitter(rng, a["bbox"], 0.15),
                    "score": round(rng.random(), 1)})
    more_images, more_anns, more_dts = random_scene(rng, [50, 51, 52, 53], [1, 2, 3], 1000)
    return ({"images": images + more_images, "annotations": anns + more_anns,
             "categories": cats}, dts + more_dts)


def random_case(seed):
    rng = random.Random(seed)
    cats = [{"id": c, "name": f"class {c}"} for c in (1, 2, 3, 4)]
    ids = rng.sample(range(1, 500), 24)
    images, anns, dts = random_scene(rng, ids, [1, 2, 3, 4], 1)
    rng.shuffle(dts)
    return {"images": images, "annotations": anns, "categories": cats}, dts


def labelme_case():
    with open(LABELME) as f:
        gt = json.load(f)
    rng = random.Random(5)
    dts = []
    for a in gt["annotations"]:
        for _ in range(rng.choice([0, 1, 2])):
            dts.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": jitter(rng, a["bbox"], rng.choice([0.02, 0.1, 0.25])),
                        "score": round(rng.random(), 3)})
    dts.append({"image_id": 0, "category_id": 12, "bbox": [10, 10, 40, 40], "score": 0.5})
    return gt, dts


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {"mixed": mixed_case(), "random1": random_case(1), "random2": random_case(2),
             "labelme": labelme_case()}
    for name, (gt, dts) in cases.items():
        gt_path = os.path.join(OUT, f"{name}_gt.json")
        dt_path = os.path.join(OUT, f"{name}_dt.json")
        if name == "labelme":
            gt_path = LABELME
        else:
            with open(gt_path, "w") as f:
                json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(dts, f)
        expected = {"coco": coco_stats(gt_path, dt_path),
                    "voc": {"offset0": voc_scores(gt, dts, 0.0),
                            "offset1": voc_scores(gt, dts, 1.0)}}
        with open(os.path.join(OUT, f"{name}_expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print(name, len(gt["images"]), "images", len(gt["annotations"]), "annotations",
              len(dts), "detections", expected["coco"])


if __name__ == "__main__":
    main()
