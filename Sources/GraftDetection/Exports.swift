// GraftDetection: box annotations (COCO JSON, Pascal VOC XML), box-aware augmentation, the
// COCO and VOC detection scores, and FCOS (losses, assignment, head, post-processing) on a
// multi-scale feature source such as ViTDet's simple feature pyramid. Images come from GraftData.
@_exported import GraftData
