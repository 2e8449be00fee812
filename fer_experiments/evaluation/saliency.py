"""Which parts of a face a model's decision rests on: Grad-CAM (Selvaraju et al. 2017).

For the predicted class c, the last convolutional feature map A (custom nets: the last conv layer;
`fer_compact`/`fer_vgg`: the last conv stage; transfer models: the backbone's last block) is weighted
channel-wise by the spatial mean of d logit_c / dA, summed and passed through ReLU, then scaled to
0..1 per face and resized to the face. Keras 3 has no backend-neutral gradient, so `_gradient` asks
the backend running it (TensorFlow, JAX or PyTorch) — the only backend-specific lines here.

Works on every model this package trains or logs: the plain network, the network behind the
augmenter / centre crop, and the calibrated model (`calibration.with_temperature`). With a centre
crop the map covers the window the model sees; the border it never sees stays 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import keras
import numpy as np

from ..data import CLASSES
from ..errors import UserError
from ..models import INPUT_SHAPE

# Layers whose output can be the explained feature map: convolutions and their activations, and a
# nested backbone (its output is its last block's activation).
FEATURE_LAYERS = (keras.layers.Conv2D, keras.layers.ReLU, keras.layers.Activation, keras.Model)
PER_CLASS = 2  # faces per class in a run's saliency grid: one the model gets right, one it gets wrong
ALPHA = 0.45  # heatmap opacity over the face


class SaliencyError(UserError):
    """A model Grad-CAM cannot explain (no feature map, no class-score layer): one line and the fix."""


@dataclass
class Explainer:
    """The pieces of a model Grad-CAM needs: what runs before the network (augmenter at inference,
    centre crop), the network up to the feature map, and the feature map → class logits."""
    front: list
    features: keras.Model
    to_logits: object  # callable: feature map tensor → logits tensor (backend tensors, differentiable)
    layer: str  # the explained layer's name, for captions

    def maps(self, x: np.ndarray, classes: np.ndarray | None = None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, 48, 48) in 0..1 for `classes` (default: each face's predicted class), and the
        logits (N, 7)."""
        x = np.asarray(x, "float32")
        heat, logits = [], []
        for start in range(0, len(x), batch_size):
            h, z = self._batch(x[start:start + batch_size], None if classes is None else classes[start:start + batch_size])
            heat.append(h)
            logits.append(z)
        return np.concatenate(heat), np.concatenate(logits)

    def _batch(self, x: np.ndarray, classes):
        for layer in self.front:
            x = layer(x, training=False)
        a = keras.ops.convert_to_numpy(self.features(x, training=False)).astype("float32")
        z = keras.ops.convert_to_numpy(self.to_logits(keras.ops.convert_to_tensor(a)))
        c = z.argmax(axis=1) if classes is None else np.asarray(classes)
        onehot = np.eye(z.shape[1], dtype="float32")[c]
        grads = _gradient(lambda t: keras.ops.sum(self.to_logits(t) * onehot), a)
        weights = grads.mean(axis=(1, 2), keepdims=True)  # one weight per channel
        cam = np.maximum((weights * a).sum(axis=-1), 0.0)
        return np.stack([_to_face(m, x.shape[1]) for m in cam]), z


def explainer(model: keras.Model) -> Explainer:
    """Grad-CAM's view of a trained (or logged) model."""
    front, net, tail = _split(model)
    scores = _score_layer(net, tail)
    idx = max((i for i, layer in enumerate(net.layers)
               if isinstance(layer, FEATURE_LAYERS) and len(layer.output.shape) == 4), default=None)
    if idx is None or idx + 1 >= len(net.layers):
        raise SaliencyError(f"model {net.name} has no convolutional feature map to explain: pass a model trained by fer-exp")
    # The next layer's input is the feature map as a tensor of `net`'s own graph (a nested backbone's
    # `.output` belongs to the backbone's graph instead).
    feature_map = net.layers[idx + 1].input
    features = keras.Model(net.input, feature_map, name=f"{net.name}_features")
    before_scores = keras.Model(feature_map, scores.input if scores in net.layers else net.output)

    def to_logits(a):
        h = before_scores(a, training=False)
        return keras.ops.matmul(h, scores.kernel) + scores.bias  # the class scores before softmax

    return Explainer(front, features, to_logits, net.layers[idx].name)


def _split(model: keras.Model):
    """(layers before the network, the network, layers after it). The network holds the softmax Dense
    "probabilities" (`model` itself, or nested behind an augmenter / centre crop), or, in a calibrated
    model, is the nested model right before the Dense "logits"."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if any(isinstance(layer, keras.layers.Dense) and layer.name == "probabilities" for layer in layers):
        return [], model, []
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.Model) and (_has_head(layer) or layers[i + 1:i + 2] and layers[i + 1].name == "logits"):
            return layers[:i], layer, layers[i + 1:]
    raise SaliencyError(f"model {model.name} has no Dense 'probabilities' or 'logits' layer to explain: pass a model "
                        f"trained by fer-exp")


def _has_head(model: keras.Model) -> bool:
    return any(isinstance(layer, keras.layers.Dense) and layer.name == "probabilities" for layer in model.layers)


def _score_layer(net: keras.Model, tail: list):
    """The Dense that produces the class scores: the network's softmax head "probabilities", or the
    calibrated model's "logits"."""
    for layer in [*tail, *net.layers]:
        if isinstance(layer, keras.layers.Dense) and layer.name in ("logits", "probabilities"):
            return layer
    raise SaliencyError(f"model {net.name} has no Dense 'probabilities' or 'logits' layer to explain: pass a model "
                        f"trained by fer-exp")


def _gradient(fn, a: np.ndarray) -> np.ndarray:
    """d fn(a) / d a for a scalar-valued fn, on whichever backend Keras runs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(a)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = fn(t)
        return tape.gradient(y, t).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(a)))
    if backend == "torch":
        import torch

        t = torch.tensor(a, requires_grad=True)
        fn(t).backward()
        return t.grad.cpu().numpy()
    raise NotImplementedError(f"Grad-CAM on the {backend} backend: use tensorflow, jax or torch")


def _to_face(cam: np.ndarray, seen: int) -> np.ndarray:
    """One map scaled to 0..1 and resized to the `seen` px window, centred in the 48-px face."""
    cam = cam / cam.max() if cam.max() > 0 else cam
    window = cv2.resize(cam.astype("float32"), (seen, seen), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    face = np.zeros(INPUT_SHAPE[:2], "float32")
    o = (INPUT_SHAPE[0] - seen) // 2
    face[o:o + seen, o:o + seen] = window
    return face


def overlay(face: np.ndarray, heat: np.ndarray, size: int = 0) -> np.ndarray:
    """RGB uint8: the gray face with the heatmap (jet, blue = unused, red = decisive) over it;
    `size` > 0 resizes to size × size first."""
    gray = np.clip(np.asarray(face, "float32").squeeze(), 0, 255).astype("uint8")
    if size:
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
    return blend(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), heat)


def blend(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """RGB uint8: `heat` (0..1, any size: resized to the image) in the jet colour map over `rgb`."""
    heat = cv2.resize(heat, rgb.shape[1::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)
    colour = cv2.cvtColor(cv2.applyColorMap((255 * heat).astype("uint8"), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(colour, ALPHA, rgb, 1 - ALPHA, 0)


def pick(y_true: np.ndarray, y_pred: np.ndarray, per_class: int = PER_CLASS, seed: int = 0) -> list[int]:
    """A fixed, seeded sample: per true class one face predicted right and one wrong (where the class
    has them; else more of the other kind), in class order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(len(CLASSES)):
        right = rng.permutation(np.flatnonzero((y_true == c) & (y_pred == c))).tolist()
        wrong = rng.permutation(np.flatnonzero((y_true == c) & (y_pred != c))).tolist()
        take = [*right[:1], *wrong[:per_class - 1]]
        rest = [i for i in right[1:] + wrong[per_class - 1:] if i not in take]
        chosen += sorted(take + rest[:per_class - len(take)], key=lambda i: y_pred[i] != c)
    return chosen


def grid_figure(x: np.ndarray, y_true: np.ndarray, heat: np.ndarray, probs: np.ndarray, title: str = "",
                layer: str = ""):
    """Rows of faces (one row per true class): the face, then its Grad-CAM overlay for the predicted
    class, captioned true → predicted and confidence (green right, red wrong)."""
    import matplotlib.pyplot as plt

    classes = sorted(set(int(c) for c in y_true))
    per_row = max(int((y_true == c).sum()) for c in classes)
    fig, axes = plt.subplots(len(classes), 2 * per_row, figsize=(1.6 * 2 * per_row, 1.75 * len(classes)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, c in enumerate(classes):
        for k, i in enumerate(np.flatnonzero(y_true == c)):
            pred = int(probs[i].argmax())
            axes[r, 2 * k].imshow(x[i].squeeze(), cmap="gray", vmin=0, vmax=255)
            axes[r, 2 * k + 1].imshow(overlay(x[i], heat[i], 96))
            axes[r, 2 * k + 1].set_title(f"→ {CLASSES[pred]} {100 * probs[i].max():.0f} %", fontsize=8,
                                         color="green" if pred == c else "red")
        axes[r, 0].set_title(CLASSES[c], fontsize=9, loc="left")
    fig.suptitle(f"{title or 'Grad-CAM'}\nmap of layer {layer} for the predicted class: red = decisive, blue = unused",
                 fontsize=9)
    fig.tight_layout()
    return fig
