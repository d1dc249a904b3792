"""Store nested Python state (optimizer, LR scheduler, RNG, grad scaler ...) without pickle.

:func:`pack_tree` splits a tree into a flat ``name -> tensor`` dict (for safetensors) and a JSON-serialisable
*skeleton*; :func:`unpack_tree` rebuilds the tree exactly. Skeleton encoding, one node at a time:

=====================  ==============================================================
Python value           skeleton
=====================  ==============================================================
``None``/bool/str      itself
int                    itself (JSON integers are exact at any size)
finite float           itself (JSON floats round-trip exactly through ``repr``)
nan / inf / -inf       ``{"float": "nan"}`` / ``{"float": "inf"}`` / ``{"float": "-inf"}``
list                   list of nodes
tuple                  ``{"tuple": [nodes]}``
dict                   ``{"dict": [[key node, value node], ...]}`` (keys keep their type: ``0`` stays int)
OrderedDict / Counter  as dict, plus ``"type": "OrderedDict"`` / ``"type": "Counter"``
torch.Tensor           ``{"tensor": name}``
=====================  ==============================================================

Subclasses of int, float, str, list and tuple (``numpy.float64``, ``IntEnum``, ``torch.Size``, named tuples)
are stored by value and come back as the plain type. Tensors come back detached, without ``requires_grad``,
on the device they are loaded to; a tensor object that appears twice is stored once and comes back as one
object. Any other type raises :class:`TypeError` naming its path.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Any

import torch

__all__ = ["SUPPORTED_DTYPES", "pack_tree", "unpack_tree"]

#: dtypes that safetensors can store (complex128 and sub-byte types cannot).
_DTYPE_NAMES = (
    "bool uint8 int8 int16 int32 int64 uint16 uint32 uint64 float16 bfloat16 float32 float64 complex64 "
    "float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz"
)
SUPPORTED_DTYPES: frozenset[torch.dtype] = frozenset(
    d for d in (getattr(torch, n, None) for n in _DTYPE_NAMES.split()) if isinstance(d, torch.dtype)
)

_DICT_TYPES: dict[type, str | None] = {dict: None, OrderedDict: "OrderedDict", Counter: "Counter"}
_DICT_FROM_NAME: dict[str | None, type] = {v: k for k, v in _DICT_TYPES.items()}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _path_str(path: tuple[Any, ...]) -> str:
    return "root" + "".join(f"[{k!r}]" for k in path)


class _Packer:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.by_id: dict[int, tuple[str, torch.Tensor]] = {}
        self.active: set[int] = set()

    def name_for(self, t: torch.Tensor, path: tuple[Any, ...]) -> str:
        if id(t) in self.by_id:
            return self.by_id[id(t)][0]
        base = ".".join(str(k) for k in path) or "root"
        name, n = base, 1
        while name in self.tensors or name == "__metadata__":
            n += 1
            name = f"{base}#{n}"
        self.tensors[name] = t.detach()
        self.by_id[id(t)] = (name, t)  # keeps ``t`` alive so its id cannot be reused
        return name

    def tensor(self, t: torch.Tensor, path: tuple[Any, ...]) -> dict[str, str]:
        where = _path_str(path)
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            raise TypeError(
                f"cannot store the {t.layout} {t.device.type} tensor at {where}: not a dense tensor"
            )
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"cannot store the tensor at {where}: safetensors does not support {t.dtype}")
        return {"tensor": self.name_for(t, path)}

    def node(self, obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj, path)
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            value = float(obj)
            if math.isfinite(value):
                return value
            return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, (list, tuple)) or type(obj) in _DICT_TYPES:
            if id(obj) in self.active:
                raise TypeError(f"cannot store {_path_str(path)}: it contains itself")
            self.active.add(id(obj))
            try:
                return self.container(obj, path)
            finally:
                self.active.discard(id(obj))
        raise TypeError(
            f"cannot store {type(obj).__module__}.{type(obj).__qualname__} at {_path_str(path)}: "
            "pack_tree stores dict, OrderedDict, Counter, list, tuple, torch.Tensor, int, float, bool, None "
            "and str "
            "(convert numpy values with .item() or torch.from_numpy)"
        )

    def container(self, obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, list):
            return [self.node(v, (*path, i)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"tuple": [self.node(v, (*path, i)) for i, v in enumerate(obj)]}
        pairs = []
        for key, value in obj.items():
            if isinstance(key, torch.Tensor):
                raise TypeError(f"cannot store a tensor as a dict key at {_path_str(path)}")
            pairs.append([self.node(key, (*path, "<key>")), self.node(value, (*path, key))])
        out: dict[str, Any] = {"dict": pairs}
        if _DICT_TYPES[type(obj)] is not None:
            out["type"] = _DICT_TYPES[type(obj)]
        return out


def pack_tree(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split ``obj`` into ``(tensors, skeleton)``: a flat name -> tensor dict and a JSON-able skeleton.

    Tensor names follow the path (``state.0.exp_avg``); tensors are detached but not copied or moved.
    Raises :class:`TypeError` naming the path of the first value that cannot be stored.
    """
    packer = _Packer()
    skeleton = packer.node(obj, ())
    return packer.tensors, skeleton


MAX_DEPTH = 200  # a training state is a few levels deep; deeper skeletons are damaged or hostile


def _unpack(node: Any, tensors: dict[str, torch.Tensor], path: tuple[Any, ...]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if len(path) > MAX_DEPTH:  # explicit: Python's recursion limit varies (torch.compile raises it)
        raise RecursionError
    if isinstance(node, list):
        return [_unpack(v, tensors, (*path, i)) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        raise ValueError(f"malformed skeleton at {_path_str(path)}: unexpected {type(node).__name__}")
    keys = set(node)
    if keys == {"tensor"}:
        if not isinstance(node["tensor"], str) or node["tensor"] not in tensors:
            raise ValueError(f"malformed skeleton at {_path_str(path)}: no tensor named {node['tensor']!r}")
        return tensors[node["tensor"]]
    if keys == {"float"} and isinstance(node["float"], str) and node["float"] in _NONFINITE:
        return _NONFINITE[node["float"]]
    if keys == {"tuple"} and isinstance(node["tuple"], list):
        return tuple(_unpack(v, tensors, (*path, i)) for i, v in enumerate(node["tuple"]))
    kind = node.get("type")
    if (
        "dict" in keys
        and keys <= {"dict", "type"}
        and isinstance(node["dict"], list)
        and (kind is None or isinstance(kind, str))
        and kind in _DICT_FROM_NAME
    ):
        out = _DICT_FROM_NAME[node.get("type")]()
        for pair in node["dict"]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"malformed skeleton at {_path_str(path)}: a dict item is not [key, value]")
            key = _unpack(pair[0], tensors, (*path, "<key>"))
            try:
                hash(key)
            except TypeError:
                raise ValueError(f"malformed skeleton at {_path_str(path)}: unhashable key {key!r}") from None
            out[key] = _unpack(pair[1], tensors, (*path, key))
        return out
    raise ValueError(f"malformed skeleton at {_path_str(path)}: unknown node {sorted(keys)}")


def unpack_tree(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild the tree that :func:`pack_tree` split into ``tensors`` and ``skeleton``.

    Raises :class:`ValueError` naming the path of a malformed node or of a missing tensor.
    """
    try:
        return _unpack(skeleton, tensors, ())
    except RecursionError:
        raise ValueError("malformed skeleton: it is nested too deeply") from None
