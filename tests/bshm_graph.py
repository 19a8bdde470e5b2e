"""Builds frozen graphs with BSHM's tensor contract, for tests and benchmarks.

The real BSHM weights live on the ModelScope hub, out of reach here. These
graphs have the same names, dtypes and dynamic shapes, and an alpha that is a
known function of the input (``expected_alpha``) chosen so that feeding BGR
instead of RGB, or 0..1 instead of 0..255, gives a visibly different matte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def expected_alpha(rgb: np.ndarray) -> np.ndarray:
    """``float [H, W, 3]`` RGB 0..255 -> ``uint8 [H, W]``, the graph's matte."""
    rgb = rgb.astype(np.float32)
    value = 0.6 * rgb[..., 0] + 0.4 * rgb[..., 1] - 0.3 * rgb[..., 2] + 20.0
    return np.round(np.clip(value, 0, 255)).astype(np.uint8)


def graph_bytes(input_name: str = "input_image", output_name: str = "output_png") -> bytes:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, shape=[None, None, 3], name=input_name)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        alpha = tf.round(tf.clip_by_value(0.6 * r + 0.4 * g - 0.3 * b + 20.0, 0.0, 255.0))
        rgb = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
        tf.concat([rgb, tf.cast(alpha, tf.uint8)[..., None]], axis=2, name=output_name)
    return graph.as_graph_def().SerializeToString()


def write_snapshot(folder: Path, **names) -> Path:
    """A ModelScope-layout folder (``configuration.json`` + ``tf_graph.pb``) -> the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuration.json").write_text(json.dumps(
        {"framework": "tensorflow", "task": "portrait-matting", "pipeline": {"type": "unet-image-matting"}}))
    (folder / "tf_graph.pb").write_bytes(graph_bytes(**names))
    return folder
