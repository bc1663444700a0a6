"""Warm-start a Keras fast-plate-ocr CCT model from our own exported ONNX model.

Only the ONNX of the shipped OCR survives (the ``.keras`` checkpoints lived in git-ignored
run folders). The exported graph keeps every weight, mostly verbatim: conv kernels in
OIHW, dense kernels transposed (Gemm ``transB``), batch norm folded to ``(x - mean) * k + b``
and the token reducer's learned queries folded through their projection. This maps them
back onto the layers :func:`fast_plate_ocr` builds from the same model config, so
fine-tuning starts from the shipped model. :func:`check_same_outputs` proves the mapping.

Tied to the ``cct_xs_us.yaml`` layout (4 conv blocks, 2 transformer layers, token reducer,
plate and region heads); other layouts raise ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _onnx_tensors(onnx_path: Path) -> tuple[dict[str, np.ndarray], list[Any]]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}, list(m.graph.node)


def keras_weights_from_onnx(model: Any, onnx_path: Path) -> None:
    """Set ``model``'s weights (in place) from the ONNX export of the same architecture."""
    init, nodes = _onnx_tensors(onnx_path)

    def consumers(op: str) -> list[list[str]]:
        return [[i for i in n.input if i in init] for n in nodes if n.op_type == op]

    convs = [c[0] for c in consumers("Conv") if init[c[0]].shape[2] == 3]  # 3x3 kernels (the 1x1 is patching)
    adds = [c[0] for c in consumers("Add") if c and init[c[0]].ndim == 4]  # conv biases and BN shifts
    subs = [c[0] for c in consumers("Sub") if c]
    bn_muls = [c[0] for c in consumers("Mul") if c and init[c[0]].ndim == 4]
    gemms = consumers("Gemm")
    lns = consumers("LayerNormalization")
    einsum_w = [c[0] for c in consumers("Einsum") if c]
    if len(convs) != 4 or len(subs) != 3 or len(lns) != 4:
        raise ValueError(f"{onnx_path}: not the CCT-XS layout this warm start knows")
    # the Add order is bias, shift per block for the first three blocks, then the last bias
    conv_bias = [adds[0], adds[2], adds[4], adds[6]]
    bn_shift = [adds[1], adds[3], adds[5]]
    eps = 1e-3
    w: dict[str, np.ndarray] = {}
    for k in range(4):
        sfx = "" if k == 0 else f"_{k}"
        w[f"conv_stem/conv2d{sfx}/kernel"] = init[convs[k]].transpose(2, 3, 1, 0)
        w[f"conv_stem/conv2d{sfx}/bias"] = init[conv_bias[k]].reshape(-1)
        if k < 3:
            w[f"conv_stem/batch_normalization{sfx}/gamma"] = init[bn_muls[k]].reshape(-1)
            w[f"conv_stem/batch_normalization{sfx}/beta"] = init[bn_shift[k]].reshape(-1)
            w[f"conv_stem/batch_normalization{sfx}/moving_mean"] = init[subs[k]].reshape(-1)
            w[f"conv_stem/batch_normalization{sfx}/moving_variance"] = np.full(init[subs[k]].size, 1.0 - eps)
    # Gemms in graph order: patch mlp, block1 mlp x2, block2 mlp x2, seq pool, plate, region
    g = [(init[c[0]].T, init[c[1]]) for c in gemms]
    if len(g) != 8:
        raise ValueError(f"{onnx_path}: expected 8 dense layers, found {len(g)}")
    names = ["mlp/dense", "transformer_block_1/mlp_1/dense_1", "transformer_block_1/mlp_1/dense_2",
             "transformer_block_2/mlp_2/dense_3", "transformer_block_2/mlp_2/dense_4",
             "region_seq_pool/dense_6", "plate/dense_5", "region"]  # fmt: skip
    for name, (kern, bias) in zip(names, g, strict=True):
        w[f"{name}/kernel"], w[f"{name}/bias"] = kern, bias
    pos = [c[0] for c in consumers("Add") if c and init[c[0]].ndim == 3]
    w["pos_emb/embeddings"] = init[pos[0]][0]
    ln_names = ["transformer_block_1/layer_normalization", "transformer_block_1/layer_normalization_1",
                "transformer_block_2/layer_normalization_2", "transformer_block_2/layer_normalization_3"]  # fmt: skip
    for name, (gamma, beta) in zip(ln_names, lns, strict=True):
        w[f"{name}/gamma"], w[f"{name}/beta"] = init[gamma], init[beta]
    # attention: query/key/value kernels (einsum), their biases (Add of a (2,128)), output kernel + bias
    kern3 = [e for e in einsum_w if init[e].ndim == 3 and init[e].shape[0] == 128]
    out3 = [e for e in einsum_w if init[e].ndim == 3 and init[e].shape[0] == 2]
    bias2 = [c[0] for c in consumers("Add") if c and init[c[0]].ndim == 2]
    bias1 = [c[0] for c in consumers("Add") if c and init[c[0]].ndim == 1]  # attention output biases
    for blk, mha in (
        (0, "transformer_block_1/multi_head_attention"),
        (1, "transformer_block_2/multi_head_attention_1"),
    ):
        for j, part in enumerate(("query", "key", "value")):
            w[f"{mha}/{part}/kernel"] = init[kern3[3 * blk + j]]
            w[f"{mha}/{part}/bias"] = init[bias2[3 * blk + j]]
        w[f"{mha}/attention_output/kernel"] = init[out3[blk]]
        w[f"{mha}/attention_output/bias"] = init[bias1[blk]]
    tr = "token_reducer/multi_head_attention_2"
    w[f"{tr}/key/kernel"], w[f"{tr}/value/kernel"] = init[kern3[6]], init[kern3[7]]
    w[f"{tr}/key/bias"], w[f"{tr}/value/bias"] = init[bias2[6]], init[bias2[7]]
    w[f"{tr}/attention_output/kernel"] = init[out3[2]]
    w[f"{tr}/attention_output/bias"] = init[bias1[2]]
    # learned queries: only their scaled projection Q is stored; pick tokens T and a kernel W with T @ W = Q
    folded = next(e for e in einsum_w if init[e].ndim == 4)
    scale = float([init[c[0]] for c in consumers("Mul") if c and init[c[0]].ndim == 0][-1])
    q = init[folded][0].reshape(8, -1) / scale  # 8 x (heads * dim)
    tokens = np.random.default_rng(0).normal(size=(8, 128)).astype(np.float32)
    w["token_reducer/query_tokens"] = tokens[None]
    w[f"{tr}/query/kernel"] = (np.linalg.pinv(tokens) @ q).reshape(128, 2, 128).astype(np.float32)
    w[f"{tr}/query/bias"] = np.zeros((2, 128), np.float32)
    missing = [v.path for v in model.weights if v.path not in w]
    if missing:
        raise ValueError(f"no ONNX weight for {missing}")
    for v in model.weights:
        v.assign(w[v.path].astype(np.float32).reshape(tuple(v.shape)))


def calibrate_batch_norms(model: Any, images: np.ndarray) -> None:
    """Give the stem's batch norms the statistics of ``images`` without changing inference.

    The export folds each batch norm into ``(x - mean) * k + b``, so :func:`keras_weights_from_onnx`
    can only set variance 1 and gamma = k. In training mode a batch norm divides by the batch's
    own standard deviation, which would rescale every activation and wreck the warm start on the
    first step. Here mean and variance become those of ``images`` and gamma/beta absorb them:
    inference is unchanged, training-mode outputs start where inference is."""
    x = model.get_layer("rescaling")(images.astype(np.float32))
    for layer in model.get_layer("conv_stem").layers:
        if type(layer).__name__ == "BatchNormalization":
            a = np.asarray(x)
            mean, var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))
            gamma, beta, m0, v0 = (np.asarray(w) for w in layer.get_weights())
            k = gamma / np.sqrt(v0 + layer.epsilon)
            layer.set_weights([k * np.sqrt(var + layer.epsilon), beta + (mean - m0) * k, mean, var])
        x = layer(x, training=False)


def check_same_outputs(model: Any, onnx_path: Path, n: int = 4, seed: int = 0) -> float:
    """Largest absolute difference of the plate probabilities, Keras vs ONNX, on random crops."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    h, w = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2])
    x = np.random.default_rng(seed).integers(0, 255, size=(n, h, w, 1)).astype(np.uint8)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(["plate"], {"input": x[i : i + 1]})[0] for i in range(n)])
    got = model.predict(x, verbose=0)
    got = got[0] if isinstance(got, list | tuple) else got
    got = got.get("plate") if isinstance(got, dict) else got
    return float(np.abs(np.asarray(got).reshape(ref.shape) - ref).max())


def write_warm_start(
    onnx_path: Path, model_config: Path, plate_config: Path, out: Path, calib_csv: Path | None = None
) -> float:
    """Build the Keras model for ``plate_config`` (the ONNX model's own), load the ONNX weights,
    calibrate the batch norms on up to 512 images of ``calib_csv`` (a trainer CSV), check the
    model gives the same outputs, save ``out`` (``.weights.h5``); returns the largest difference."""
    from fast_plate_ocr.train.model.config import load_plate_config_from_yaml
    from fast_plate_ocr.train.model.model_builders import build_model
    from fast_plate_ocr.train.model.model_schema import load_model_config_from_yaml

    pc = load_plate_config_from_yaml(plate_config)
    model = build_model(load_model_config_from_yaml(model_config), pc, enable_region_head=bool(pc.plate_regions))
    keras_weights_from_onnx(model, onnx_path)
    if calib_csv is not None:
        import csv

        import cv2

        with calib_csv.open() as f:
            paths = [calib_csv.parent / r["image_path"] for r in csv.DictReader(f)]
        pick = np.random.default_rng(0).permutation(len(paths))[:512]
        imgs = []
        for i in pick:
            g = cv2.imread(str(paths[int(i)]), cv2.IMREAD_GRAYSCALE)
            if g is not None:
                imgs.append(cv2.resize(g, (pc.img_width, pc.img_height), interpolation=cv2.INTER_LINEAR)[..., None])
        calibrate_batch_norms(model, np.stack(imgs))
    diff = check_same_outputs(model, onnx_path)
    if diff > 1e-3:
        raise ValueError(f"warm start from {onnx_path} does not reproduce it (max difference {diff})")
    model.save_weights(str(out))
    return diff


if __name__ == "__main__":  # python -m node.training.onnx_weights ONNX MODEL_CFG PLATE_CFG OUT.weights.h5 [TRAIN_CSV]
    import sys

    print(write_warm_start(*(Path(a) for a in sys.argv[1:6])))
