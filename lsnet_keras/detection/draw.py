"""Detections drawn on the image with Pillow: a box and "name score" per detection.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from lsnet_keras.detection.draw import draw_detections
    >>> picture = draw_detections(Image.new("RGB", (64, 64)), np.array([[4.0, 4, 40, 40]]),
    ...                           np.array([0.9]), ["cat"])
    >>> picture.size
    (64, 64)
"""

from PIL import ImageDraw, ImageFont

# Distinct, readable box colours, cycled by class index.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def draw_detections(image, boxes, scores, names, labels=None):
    """A copy of a PIL image with each box (x1, y1, x2, y2 pixels) outlined and captioned
    `names[i] score`; `labels` (class indices) pick the colours.

    Example:
        >>> from PIL import Image
        >>> draw_detections(Image.new("RGB", (8, 8)), [], [], []).size
        (8, 8)
    """
    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 200))
    font = ImageFont.load_default(size=max(10, round(min(picture.size) / 40)))
    for index, (box, score, name) in enumerate(zip(boxes, scores, names)):
        colour = PALETTE[(labels[index] if labels is not None else index) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        caption = f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), caption, font=font)
        top_edge = max(0.0, y1 - (bottom - top) - 2)
        draw.rectangle(
            (x1, top_edge, x1 + right - left + 4, top_edge + bottom - top + 2), fill=colour
        )
        draw.text((x1 + 2, top_edge), caption, fill=(0, 0, 0), font=font)
    return picture
