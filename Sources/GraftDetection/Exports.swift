// GraftDetection: box annotations (COCO JSON, Pascal VOC XML), box-aware augmentation and the
// COCO and VOC detection scores. Images come from GraftData.
@_exported import GraftData
