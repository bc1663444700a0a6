"""Warm-start the YOLOv8 detector from our own exported ONNX model.

The shipped detector survives only as ONNX (the ``.pt`` checkpoints lived in git-ignored
run folders). Ultralytics exports fused Conv+BatchNorm layers under the module names of the
model (``model.2.cv1.conv.weight`` / ``.bias``); this puts each fused kernel back into its
convolution and turns the batch norm after it into "add the bias", so
``YOLO(model_yaml)`` carries the shipped weights and fine-tuning starts from them.
:func:`write_detector_pt` checks the rebuilt model gives the same raw outputs as the ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_onnx_into_yolo(yolo_model: Any, onnx_path: Path) -> int:
    """Copy the ONNX weights into an unfused ultralytics DetectionModel (in place); returns tensors set."""
    import onnx
    import torch
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    modules = dict(yolo_model.named_modules())
    done = 0
    with torch.no_grad():
        for name, arr in init.items():
            if not name.startswith("model.") or not name.endswith(".conv.weight"):
                continue
            base = name[: -len(".conv.weight")]
            parent, conv = modules.get(base), modules.get(base + ".conv")
            if conv is None:
                continue
            w = torch.from_numpy(arr.copy())
            if tuple(conv.weight.shape) != tuple(w.shape):
                raise ValueError(f"{name}: ONNX {tuple(w.shape)} vs model {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            bias = init.get(base + ".conv.bias")
            bn = getattr(parent, "bn", None)
            if bn is not None:  # fused in the export: the BN becomes x + bias
                bn.weight.fill_(1.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.bias.copy_(torch.from_numpy(bias.copy()) if bias is not None else torch.zeros_like(bn.bias))
            elif bias is not None and conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(bias.copy()))
            done += 1
        for name, arr in init.items():  # plain convolutions of the head (cv2.x.2, cv3.x.2): weight + bias
            if name.startswith("model.") and name.endswith(".weight") and not name.endswith(".conv.weight"):
                mod = modules.get(name[: -len(".weight")])
                if mod is not None and tuple(mod.weight.shape) == arr.shape:
                    mod.weight.copy_(torch.from_numpy(arr.copy()))
                    b = init.get(name[: -len(".weight")] + ".bias")
                    if b is not None and mod.bias is not None:
                        mod.bias.copy_(torch.from_numpy(b.copy()))
                    done += 1
    return done


def write_detector_pt(onnx_path: Path, model_yaml: str, out: Path, imgsz: int = 640) -> float:
    """Save an ultralytics ``.pt`` that reproduces ``onnx_path``; returns the largest output difference."""
    import onnxruntime as ort  # type: ignore[import-untyped]
    import torch
    from ultralytics.nn.tasks import DetectionModel

    net = DetectionModel(model_yaml, nc=1, verbose=False)  # type: ignore[no-untyped-call]
    n = load_onnx_into_yolo(net, onnx_path)
    net.eval()
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x))
    got = got[0] if isinstance(got, list | tuple) else got
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = float(np.abs(got.numpy() - ref).max())
    if diff > 1e-2:
        raise ValueError(f"rebuilt detector differs from {onnx_path} by {diff} ({n} tensors set)")
    ckpt = {"model": net, "train_args": {}, "epoch": -1, "optimizer": None, "ema": None, "updates": 0}
    torch.save(ckpt, str(out))
    return diff


if __name__ == "__main__":  # python -m node.training.detector_weights ONNX MODEL_YAML OUT.pt
    import sys

    print(write_detector_pt(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
