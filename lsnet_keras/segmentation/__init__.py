"""Semantic segmentation around the LSNet Semantic FPN: ADE20K's classes and colors, pictures,
and running segmenters on image files (`lsnet segment`)."""
