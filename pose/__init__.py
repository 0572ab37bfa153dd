"""Top-down COCO keypoint proxy: data, synthetic data, targets, training, decoding, COCOeval."""
