"""Convert the authors' PyTorch SE-ResNet-50 weights into an exported cmemo_jax teacher.

  python -m cmemo_jax.convert --from=senet50_ferplus_dag.pth --to=teacher.msgpack [--num-classes=8]

Reads the state_dicts of the authors' converted-from-Caffe models (`senet50_ferplus_dag`: 8
emotion logits; VGGFace2 `senet50_ft_dag`: 8631 identities) and writes `cmemo_jax.export.save`'s
format with meta kind 'teacher', so `cmemo_jax.export.load` rebuilds the model. The architecture
(width, blocks per stage, SE reduction, classes) is read off the parameter names and shapes;
`--num-classes` only checks the classifier's size. Bad input is a one-line error naming the file
and the first offending parameters (exit status 2).

Name mapping (PyTorch -> flax, S = 2..5 stage, B = 1..n block):
  conv1_7x7_s2.weight                 params/conv1_7x7_s2/kernel          OIHW -> HWIO
  conv{S}_{B}_{layer}.weight / .bias  params/conv{S}_{B}/{layer}/kernel, bias
      layer in 1x1_reduce, 3x3, 1x1_increase, 1x1_proj (no bias), 1x1_down, 1x1_up (SE, with bias)
  {conv}_bn.weight / .bias            params/.../{conv}_bn/scale, bias
  {conv}_bn.running_mean / _var       batch_stats/.../{conv}_bn/mean, var
  classifier.weight [K, 2048, 1, 1] (Conv2d head) or [K, 2048] (Linear head), .bias
                                      params/classifier/kernel [2048, K], bias
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from cmemo_jax import export
from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS
from cmemo_jax.errors import CmemoError
from cmemo_jax.models import registry
from cmemo_jax.models.senet import MEAN_RGB, SENet50

INPUT_SIZE = 224  # the authors' training and test resolution (pixels, square)

# flax leaf -> PyTorch tensor name suffix. BN: weight/bias are the affine scale/shift.
# running_var is copied as stored: PyTorch accumulates the unbiased batch variance while training
# and flax the biased one, but in eval mode both simply use the stored value, so eval outputs agree.
_TORCH_LEAF = {("params", "kernel"): "weight", ("params", "bias"): "bias", ("params", "scale"): "weight",
               ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
_BLOCK_NAME = re.compile(r"^conv(\d+)_(\d+)_")
_IGNORED_SUFFIX = ".num_batches_tracked"  # BN bookkeeping, no flax counterpart
_LIST_AT_MOST = 3  # offending names quoted in an error message


class ConversionError(CmemoError, ValueError):
    """A .pth file that is not the authors' SE-ResNet-50 state_dict; the message names the file and
    the first offending parameters."""


def _first(names) -> str:
    names = sorted(names)
    more = f" (and {len(names) - _LIST_AT_MOST} more)" if len(names) > _LIST_AT_MOST else ""
    return ", ".join(names[:_LIST_AT_MOST]) + more


def _leading_dim(state_dict: dict, name: str, source: str) -> int:
    """Size of the first axis (output channels / classes) of tensor `name`."""
    if name not in state_dict:
        raise ConversionError(f"{source}: missing parameter {name} (not an SE-ResNet-50 state_dict?)")
    shape = tuple(np.shape(state_dict[name]))
    if not shape:
        raise ConversionError(f"{source}: {name} is a scalar, expected a weight tensor")
    return int(shape[0])


def infer_model_kwargs(state_dict: dict, source: str) -> dict:
    """SENet50 constructor arguments read off the authors' names and shapes.

    width: stem output channels; stage_sizes: the highest block number B of each stage S = 2, 3,
    ... (`conv{S}_{B}_*`); se_reduction: first block's output channels / its SE hidden units;
    num_classes: classifier outputs. Any other inconsistency surfaces in the full shape check.
    """
    width = _leading_dim(state_dict, "conv1_7x7_s2.weight", source)
    blocks: dict[int, int] = {}
    for name in state_dict:
        m = _BLOCK_NAME.match(name)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block)
    if not blocks:
        raise ConversionError(f"{source}: no conv{{S}}_{{B}}_* parameters (not an SE-ResNet-50 state_dict?)")
    stage_sizes = tuple(blocks.get(s, 0) for s in range(2, max(blocks) + 1))
    if 0 in stage_sizes:
        missing_stage = 2 + stage_sizes.index(0)
        raise ConversionError(f"{source}: missing parameters of stage conv{missing_stage}_* "
                              f"(found stages {sorted(blocks)})")
    out_channels = _leading_dim(state_dict, "conv2_1_1x1_increase.weight", source)
    hidden = _leading_dim(state_dict, "conv2_1_1x1_down.weight", source)
    if hidden < 1 or out_channels % hidden:
        raise ConversionError(f"{source}: conv2_1_1x1_down.weight has {hidden} outputs, which do not divide the "
                              f"block's {out_channels} channels")
    num_classes = _leading_dim(state_dict, "classifier.weight", source)
    return {"num_classes": num_classes, "stage_sizes": stage_sizes, "width": width,
            "se_reduction": out_channels // hidden}


def _expected_variables(model: SENet50) -> dict:
    """{(collection, *path): shape} of every variable the model has (abstract init: no compute)."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        flat[tuple(k.key for k in path)] = tuple(leaf.shape)
    return flat


def _torch_name(key: tuple) -> str:
    """('params', 'conv2_1', '1x1_reduce', 'kernel') -> 'conv2_1_1x1_reduce.weight'."""
    collection, *modules, leaf = key
    return "_".join(modules) + "." + _TORCH_LEAF[(collection, leaf)]


def _to_flax(value: np.ndarray, flax_shape: tuple) -> np.ndarray:
    """A PyTorch tensor in the layout of the flax leaf of `flax_shape` (shape checked by the caller).

    Conv OIHW -> HWIO; the classifier, a 1x1 Conv2d [K, C, 1, 1] or a Linear [K, C], -> Dense [C, K].
    """
    if len(flax_shape) == 4:
        return value.transpose(2, 3, 1, 0)
    if len(flax_shape) == 2:
        return value.reshape(value.shape[0], -1).T
    return value


def _torch_shape(flax_shape: tuple, given_ndim: int) -> tuple:
    """The PyTorch shape that maps onto `flax_shape` (for error messages, in the file's layout)."""
    if len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if len(flax_shape) == 2:
        c, k = flax_shape
        return (k, c, 1, 1) if given_ndim == 4 else (k, c)
    return flax_shape


def convert_state_dict(state_dict: dict, source: str) -> tuple[dict, dict]:
    """The authors' state_dict {name: array} -> (SENet50 kwargs as JSON-able values,
    {'params': ..., 'batch_stats': ...} float32 NumPy pytree). `source` names the file in errors.

    Every model variable must be present with the right shape, and every tensor in the file must
    be used (except BN `num_batches_tracked`): a ConversionError (a ValueError) names the first
    offenders otherwise.
    """
    kwargs = infer_model_kwargs(state_dict, source)
    model = SENet50(**kwargs)
    expected = _expected_variables(model)
    variables: dict = {}
    missing, mismatched, used = [], [], set()
    for key, shape in expected.items():
        name = _torch_name(key)
        if name not in state_dict:
            missing.append(name)
            continue
        used.add(name)
        value = np.asarray(state_dict[name])
        want = _torch_shape(shape, value.ndim)
        if tuple(value.shape) != want:
            mismatched.append(f"{name} has shape {tuple(value.shape)}, expected {want}")
            continue
        node = variables
        for k in key[:-1]:
            node = node.setdefault(k, {})
        node[key[-1]] = np.ascontiguousarray(_to_flax(value, shape), dtype=np.float32)
    if missing:
        raise ConversionError(f"{source}: missing parameter(s) {_first(missing)} "
                              f"for SENet50({_describe(kwargs)})")
    if mismatched:
        more = f" (and {len(mismatched) - _LIST_AT_MOST} more)" if len(mismatched) > _LIST_AT_MOST else ""
        raise ConversionError(f"{source}: shape mismatch: {'; '.join(mismatched[:_LIST_AT_MOST])}{more} "
                              f"for SENet50({_describe(kwargs)})")
    used_modules = {name.rsplit(".", 1)[0] for name in used}
    unexpected = [n for n in state_dict if n not in used
                  and not (n.endswith(_IGNORED_SUFFIX) and n[: -len(_IGNORED_SUFFIX)] in used_modules)]
    if unexpected:
        raise ConversionError(f"{source}: unexpected parameter(s) {_first(unexpected)} "
                              f"for SENet50({_describe(kwargs)})")
    return registry.constructor_kwargs(model), variables


def _describe(kwargs: dict) -> str:
    return ", ".join(f"{k}={tuple(v) if isinstance(v, (list, tuple)) else v}" for k, v in kwargs.items())


def _strip_prefix(state_dict: dict) -> dict:
    """Drops the 'module.' prefix nn.DataParallel adds to every name, if all names carry it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def load_state_dict(path: str) -> dict:
    """{name: float32 np.ndarray} from a .pth holding a state_dict, bare or under 'state_dict'.

    PyTorch is imported only here (an optional dependency); `weights_only=True` never runs code
    from the file.
    """
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{path}: reading .pth files needs PyTorch, which is not installed "
                              f"(pip install torch)") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - pickle / zip / torch errors: all mean "not a weights file"
        if "Weights only load failed" in str(e):  # a pickled object other than tensors, e.g. a whole nn.Module
            raise ConversionError(f"{path}: holds pickled Python objects, not a state_dict of tensors "
                                  f"(save model.state_dict() instead)") from None
        raise ConversionError(f"{path}: not a PyTorch .pth file ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: not a PyTorch state_dict (holds a {type(obj).__name__}, "
                              f"not a dict of tensors)")
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path}: not a PyTorch state_dict (entry {name!r} is a "
                                  f"{type(value).__name__}, not a tensor)")
    # .float() first: NumPy has no bfloat16.
    return _strip_prefix({name: value.detach().float().cpu().numpy() for name, value in obj.items()})


def teacher_meta(kwargs: dict, source: str) -> dict:
    """Export meta of a converted teacher (cmemo_jax.export format)."""
    meta = {"kind": "teacher", "model": kwargs, "source": os.path.basename(source),
            "input": {"size": INPUT_SIZE, "channels": "RGB", "range": [0, 255], "mean_rgb": list(MEAN_RGB)}}
    if kwargs["num_classes"] == NUM_EMOTIONS:
        meta["emotions"] = list(EMOTIONS)
    return meta


def convert_file(src: str, dst: str, num_classes: int | None = None) -> dict:
    """Reads the .pth `src`, writes the exported teacher `dst`; returns its meta.

    `num_classes`, if given, must equal the classifier's size in the file (a check, not a choice).
    """
    kwargs, variables = convert_state_dict(load_state_dict(src), src)
    if num_classes is not None and num_classes != kwargs["num_classes"]:
        raise ConversionError(f"{src}: classifier.weight has {kwargs['num_classes']} outputs, "
                              f"but --num-classes={num_classes} was given")
    meta = teacher_meta(kwargs, src)
    try:
        export.save(dst, meta, variables)
    except OSError as e:
        raise ConversionError(f"{dst}: cannot write the model file ({e.strerror})") from None
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", required=True, metavar="FILE.pth", help="the authors' state_dict")
    parser.add_argument("--to", dest="dst", required=True, metavar="FILE.msgpack", help="exported teacher to write")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="check that the classifier has this many outputs (it is read from the file)")
    args = parser.parse_args(argv)
    try:
        meta = convert_file(args.src, args.dst, args.num_classes)
    except CmemoError as e:  # ours and export's (e.g. --to names a folder): one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"converted {args.src} -> {args.dst}: SENet50({_describe(meta['model'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
