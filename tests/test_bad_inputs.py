"""A catalogue of bad inputs and the exact error a user sees for each.

One table per input class; every row is one bad input and the whole message it must
produce. The contract (see "Failure behaviour" in the README): one line, naming the file
and line, the layer or the value, and saying what to do; never a deep torch/dimod/numpy
traceback, never a silently wrong result.

    FILE_CASES         QUBO/Ising problem files (ising_qubo.io)
    MODEL_CASES        networks and pruning problems (adapter, problem, importance)
    DATA_CASES         datasets on disk (ising_qubo.nets.data)
    CHECKPOINT_CASES   checkpoints, weights files and saved models (training, persist)
    CLI_CASES          the same through ``ising-qubo``: exit code 2 and one stderr line

Further rows that need more than a raise-and-compare (memory caps, files that must not be
executed, warnings, models that must stay intact) are the tests after each table.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import re
import tracemalloc
import warnings
from collections import OrderedDict
from pathlib import Path

import dimod
import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from torch import nn

import ising_qubo.io as qio
from ising_qubo.cli import app as cli
from ising_qubo.nets.data import ImageDataset, load_dataset, load_splits
from ising_qubo.nets.models import build
from ising_qubo.nets.persist import ARCHITECTURE_FILE, WEIGHTS_FILE, load_pruned, save_pruned
from ising_qubo.nets.training import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from ising_qubo.pruning.energies import (
    cosine_redundancy,
    kl_matrix,
    kl_redundancy,
    redundancy_affinity,
)
from ising_qubo.pruning.groups import ModelGroups, UnknownGroupError
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.pruning.pruners import ImportancePruner

pytestmark = pytest.mark.usefixtures("one_torch_thread")


WILD = "<*>"  # in an expected message: any text (a library's own wording, a long list)


def pattern_of(expected: str, **values) -> str:
    """``expected`` with ``{name}`` replaced by ``values[name]``, as a full-match regex."""
    for name, value in values.items():
        expected = expected.replace("{" + name + "}", str(value))
    return ".*".join(re.escape(part) for part in expected.split(WILD))


def check_message(error: BaseException | str, expected: str, **values) -> str:
    """The message is one line and is ``expected`` (see :func:`pattern_of`)."""
    message = str(error)
    assert "\n" not in message, f"not one line: {message!r}"
    assert re.fullmatch(pattern_of(expected, **values), message, re.S), (
        f"\nexpected: {expected}\nactual:   {message}"
    )
    return message


# =========================================================================================
# QUBO / Ising problem files
# =========================================================================================


def _bqm_file(bias: float = 1.0) -> bytes:
    bqm = dimod.BinaryQuadraticModel({0: bias, 1: 1.0}, {(0, 1): 2.0}, 0.0, "SPIN")
    return bqm.to_file().read()


def _json_doc(linear) -> str:
    bqm = dimod.BinaryQuadraticModel({0: 1.0, 1: 1.0}, {(0, 1): 2.0}, 0.0, "SPIN")
    doc = bqm.to_serializable()
    doc["linear_biases"] = linear
    return json.dumps(doc)  # writes NaN / Infinity, as other tools do


TWO_BQP = "2\n2 1\n1 1 3\n2 1\n2 2 5\n"
BQM_NUL = _bqm_file().find(b"\0")  # where a .bqm file stops being text
GSET_EXPECTED = "a rudy/Gset graph (first line 'N E', then E lines 'i j w', 1-based)"

# (id, file name, content, load() keywords, exact message; {p} is the file's path)
FILE_CASES = [
    ("empty", "g.gset", "", {}, "{p}: empty file"),
    ("whitespace only", "g.gset", " \n\t\n", {}, "{p}: empty file (only whitespace)"),
    ("empty, sniffed", "g.txt", "", {}, "{p}: empty file"),
    (
        "truncated edges",
        "g.gset",
        "4 3\n1 2 1\n2 3 1\n",
        {},
        "{p}:1: truncated: the header declares 3 edges but the file has 2",
    ),
    (
        "truncated instance",
        "b.bqp",
        "1\n2 3\n1 1 3\n1 2 1\n",
        {},
        "{p}:2: truncated: instance 1 declares 3 entries but the file ends after 2",
    ),
    (
        "truncated instances",
        "b.bqp",
        "3\n2 1\n1 1 3\n",
        {},
        "{p}:1: truncated: 3 instances declared but the file ends after 1",
    ),
    (
        "header one field",
        "g.gset",
        "4\n1 2 1\n",
        {},
        "{p}:1: header must be 'N E' (nodes, edges), got '4'",
    ),
    (
        "edges beyond a simple graph",
        "g.gset",
        "4 7\n1 2 1\n",
        {},
        "{p}:1: E = 7 edges is more than a simple graph on 4 nodes can have",
    ),
    (
        "extra edge",
        "g.gset",
        "4 1\n1 2 1\n2 3 1\n",
        {},
        "{p}:3: extra data after the 1 edges the header declares",
    ),
    (
        "qubo nNodes count",
        "q.qubo",
        "p qubo 0 2 1 0\n0 0 1\n1 1 1\n",
        {},
        "{p}:1: header declares nNodes=1 diagonal lines but the file has 2",
    ),
    (
        "qubo data before header",
        "q.qubo",
        "0 0 1\np qubo 0 1 1 0\n",
        {},
        "{p}:1: data before the 'p qubo ...' header: '0 0 1'",
    ),
    (
        "coo without vartype",
        "c.coo",
        "0 0 1\n",
        {},
        "{p}: no '# vartype=SPIN' or '# vartype=BINARY' header line",
    ),
    (
        "non-numeric weight",
        "g.gset",
        "4 2\n1 2 1\n2 3 abc\n",
        {},
        "{p}:3: edge weight must be a number, got 'abc'",
    ),
    (
        "non-integer index",
        "c.coo",
        "# vartype=SPIN\n0 a 1\n",
        {},
        "{p}:2: variable index must be an integer, got 'a'",
    ),
    (
        "coo index beyond a C integer",
        "c.coo",
        "# vartype=SPIN\n0 0 1\n" + str(10**30) + " 1 2\n",
        {},
        "{p}:3: variable index " + str(10**30) + " out of range (|index| < 2**63)",
    ),
    (
        "fractional node id",
        "g.gset",
        "4 1\n1 2.0 1\n",
        {},
        "{p}:2: node id must be an integer, got '2.0'",
    ),
    (
        "NaN weight",
        "g.gset",
        "4 2\n1 2 1\n2 3 nan\n",
        {},
        "{p}:3: edge weight must be a finite number, got 'nan'",
    ),
    (
        "inf value",
        "q.qubo",
        "p qubo 0 2 1 0\n0 0 inf\n",
        {},
        "{p}:2: value must be a finite number, got 'inf'",
    ),
    (
        "overflowing bias",
        "c.coo",
        "# vartype=SPIN\n0 1 -1e999\n",
        {},
        "{p}:2: bias must be a finite number, got '-1e999'",
    ),
    (
        "NaN offset",
        "c.coo",
        "# vartype=SPIN\n# offset=nan\n",
        {},
        "{p}:2: offset must be a finite number, got 'nan'",
    ),
    (
        "NaN in JSON",
        "m.json",
        _json_doc([float("nan"), 1.0]),
        {},
        "{p}: the linear bias of variable 0 is nan; every bias must be a finite number",
    ),
    (
        "inf in .bqm",
        "m.bqm",
        _bqm_file(math.inf),
        {},
        "{p}: the linear bias of variable 0 is inf; every bias must be a finite number",
    ),
    (
        "node id out of range",
        "g.gset",
        "4 2\n1 2 1\n2 5 1\n",
        {},
        "{p}:3: node id 5 out of range 1..4",
    ),
    (
        "index 0 in 1-based file",
        "b.bqp",
        "1\n2 1\n0 1 3\n",
        {},
        "{p}:3: instance 1: index 0 out of range 1..2",
    ),
    (
        "negative qubo index",
        "q.qubo",
        "p qubo 0 2 1 0\n-1 0 1\n",
        {},
        "{p}:2: index -1 out of range 0..1 (maxNodes=2)",
    ),
    (
        "duplicate edge, reversed",
        "g.gset",
        "4 2\n1 2 1\n2 1 1\n",
        {},
        "{p}:3: duplicate edge 2 1 (first on line 2)",
    ),
    (
        "duplicate qubo entry",
        "q.qubo",
        "p qubo 0 3 0 2\n0 1 1\n1 0 1\n",
        {},
        "{p}:3: duplicate entry 0 1 (first on line 2)",
    ),
    ("self-loop in Gset", "g.gset", "4 2\n1 2 1\n3 3 1\n", {}, "{p}:3: self-loop on node 3"),
    ("self-loop in rudy", "g.rudy", "3 1\n2 2 -1\n", {}, "{p}:2: self-loop on node 2"),
    ("self-loop, sniffed", "g.txt", "3 1\n1 1 5\n", {}, "{p}:2: self-loop on node 1"),
    (
        "instance out of range",
        "b.bqp",
        TWO_BQP,
        {"instance": 3},
        "{p}: instance 3 is out of range; the file holds 2 instances, pass instance=1..2",
    ),
    (
        "instance 0",
        "b.bqp",
        TWO_BQP,
        {"instance": 0},
        "{p}: instance 0 is out of range; the file holds 2 instances, pass instance=1..2",
    ),
    (
        "instance missing",
        "b.bqp",
        TWO_BQP,
        {},
        "{p} holds 2 instances; pass instance=1..2 to choose one (or use load_all / "
        "read_instances)",
    ),
    (
        "instance of a single file",
        "g.gset",
        "3 1\n1 2 1\n",
        {"instance": 2},
        "{p}: instance 2 is out of range; the file holds 1 instance, pass only instance=1 "
        "(or None)",
    ),
    (
        "random bytes to a text reader",
        "g.gset",
        b"\x00\x9f\x92\x96 random",
        {},
        f"{{p}} is not a text file (binary data at byte 0); expected {GSET_EXPECTED}",
    ),
    (
        "invalid UTF-8 to a text reader",
        "g.gset",
        b"4 1\n1 2 \xff\n",
        {},
        f"{{p}} is not a text file (binary data at byte 8); expected {GSET_EXPECTED}",
    ),
    (
        ".bqm contents to the Gset reader",
        "g.gset",
        _bqm_file(),
        {},
        f"{{p}} is not a text file (binary data at byte {BQM_NUL}); expected {GSET_EXPECTED}",
    ),
    (
        ".bqm contents, format=qubo",
        "m.bqm",
        _bqm_file(),
        {"format": "qubo"},
        f"{{p}} is not a text file (binary data at byte {BQM_NUL}); expected "
        f"a qbsolv .qubo file ('p qubo 0 maxNodes nNodes nCouplers' header, 'i j value' lines)",
    ),
    (
        "text in a .bqm",
        "m.bqm",
        "4 1\n1 2 1\n",
        {},
        "{p}: not a dimod BQM file (<*>); expected the output of BinaryQuadraticModel.to_file()",
    ),
    (
        "huge node count",
        "g.gset",
        "100000000 5\n",
        {},
        "{p}:1: node count N = 100000000 is more than this reader accepts (10,000,000); the "
        "header is probably corrupt",
    ),
    (
        "huge bqp n",
        "b.bqp",
        "1\n100000000 5\n",
        {},
        "{p}:2: instance 1: variable count n = 100000000 is more than this reader accepts "
        "(10,000,000); the header is probably corrupt",
    ),
    (
        "huge qubo maxNodes",
        "q.qubo",
        "p qubo 0 20000000 0 0\n",
        {},
        "{p}:1: maxNodes = 20000000 is more than this reader accepts (10,000,000); the header "
        "is probably corrupt",
    ),
    (
        "huge edge count",
        "g.gset",
        "3 99999999999\n",
        {},
        "{p}:1: edge count E = 99999999999 is more than this reader accepts (50,000,000); the "
        "header is probably corrupt",
    ),
    (
        "JSON of the wrong shape: list",
        "m.json",
        "[1, 2]",
        {},
        "{p}: not a dimod BQM JSON document (BinaryQuadraticModel.to_serializable()): found "
        "type 'list'",
    ),
    (
        "JSON of another dimod type",
        "m.json",
        '{"type": "DiscreteQuadraticModel"}',
        {},
        "{p}: not a dimod BQM JSON document (BinaryQuadraticModel.to_serializable()): found "
        "type 'DiscreteQuadraticModel'",
    ),
    (
        "JSON BQM without its arrays",
        "m.json",
        '{"type": "BinaryQuadraticModel"}',
        {},
        "{p}: malformed BQM JSON document (KeyError: 'variable_labels')",
    ),
    (
        "JSON syntax error",
        "m.json",
        '{"type": "BinaryQuadraticModel",\n "x": }',
        {},
        "{p}:2: invalid JSON: Expecting value (column 7)",
    ),
    (
        "unknown suffix",
        "m.xyz",
        "1 2 3\n",
        {},
        "{p}: unknown file suffix '.xyz'; known suffixes: <*>; or pass format= one of: <*>",
    ),
    (
        "unsniffable .txt",
        "m.txt",
        "hello world foo bar\n",
        {},
        "{p}: cannot tell the format from the first line 'hello world foo bar': <*>; pass "
        "format= one of: <*>",
    ),
]


@pytest.mark.parametrize(
    "name, content, kwargs, expected",
    [case[1:] for case in FILE_CASES],
    ids=[c[0] for c in FILE_CASES],
)
def test_problem_file(tmp_path, name, content, kwargs, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError) as info:
        qio.load(path, **kwargs)
    check_message(info.value, expected, p=path)


def test_missing_problem_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.gset"))):
        qio.load(tmp_path / "nope.gset")


@pytest.mark.parametrize(
    "name, text",
    [
        ("g.gset", "9999999 5\n1 2 1\n"),  # truncated after the header
        ("b.bqp", "1\n9999999 5\n1 1 1\n"),  # the same, Beasley
        ("q.qubo", "p qubo 0 9999999 1 0\n"),  # declares a line it lacks
    ],
)
def test_large_declared_size_fails_before_allocating(tmp_path, name, text):
    """A header may declare up to 10^7 variables, but nothing n-sized is allocated until
    the lines have proved the file consistent (here they do not)."""
    path = tmp_path / name
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(str(path))):
            qio.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB allocated for a {len(text)}-byte file"


@pytest.mark.parametrize("fmt", ["json", "bqm", "coo", "qubo"])
def test_non_finite_models_are_not_written(tmp_path, fmt):
    """What no reader accepts is not written either (the old file stays)."""
    path = tmp_path / f"m.{fmt}"
    path.write_text("previous")
    bqm = dimod.BinaryQuadraticModel({0: 1.0}, {(0, 1): math.nan}, 0.0, "BINARY")
    with pytest.raises(ValueError, match="non-finite") as info:
        qio.save(bqm, path)
    assert "\n" not in str(info.value)
    assert path.read_text() == "previous"


# =========================================================================================
# Models and pruning problems
# =========================================================================================


class Net(nn.Module):
    """stem -> bn -> block.conv1 -> head: groups 'stem' and 'block.conv1'."""

    def __init__(self, width: int = 4, classes: int = 3, stem_width: int | None = None):
        super().__init__()
        stem_width = width if stem_width is None else stem_width
        self.stem = nn.Conv2d(3, stem_width, 3, padding=1)
        self.bn = nn.BatchNorm2d(stem_width)
        self.block = nn.Sequential(
            OrderedDict(conv1=nn.Conv2d(stem_width, width, 3, padding=1), relu=nn.ReLU())
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.block(torch.relu(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


class DepthwiseWeight(nn.Module):
    """A custom layer with its own weight: Torch-Pruning has no pruner for it."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, 1, 3, 3))

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = DepthwiseWeight(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv2(torch.relu(self.dw(self.conv1(x))))
        return self.head(x.mean((2, 3)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 6)
        self.lstm = nn.LSTM(6, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y, _ = self.lstm(torch.relu(self.fc(x)))
        return self.head(y[:, -1])


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 2])


def net(seed: int = 0, **kwargs) -> Net:
    torch.manual_seed(seed)
    return Net(**kwargs)


def with_weight(value: float, module: str = "block.conv1", index=(2, 1, 0, 0)) -> Net:
    model = net()
    with torch.no_grad():
        dict(model.named_modules())[module].weight[index] = value
    return model


def problem(**kwargs) -> PruningProblem:
    return PruningProblem.from_model(net(), X, keep=0.5, **kwargs)


def one_channel_everywhere() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 1, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2)
    )


NAN_LAYER = (
    "layer 'block.conv1' (Conv2d, weight shape (4, 4, 3, 3)) has 1 NaN or infinite "
    "weight(s), the first in output channel 2: the energy cannot be built (did "
    "training diverge? lower the learning rate or restart from a finite checkpoint)"
)
KEEP = "keep must be a fraction in (0, 1], got {}"
MASK = "group 'stem': mask {} shape {}, expected (4,)"
IMPORTANCES = "l1, l2, bn, taylor, random, tp-magnitude, tp-taylor, tp-bn"


def _bn_nan() -> PruningProblem:
    model = net()
    with torch.no_grad():
        model.bn.weight[1] = math.nan
    return PruningProblem.from_model(model, X, keep=0.5, importance="bn")


# (id, action, exception type, message: exact, or a regex when it holds ".*")
MODEL_CASES = [
    (
        "NaN weight, redundancy energy",
        lambda: PruningProblem.from_model(with_weight(math.nan), X, keep=0.5),
        ValueError,
        NAN_LAYER,
    ),
    (
        "inf weight, redundancy energy",
        lambda: PruningProblem.from_model(with_weight(math.inf), X, keep=0.5),
        ValueError,
        NAN_LAYER,
    ),
    (
        "NaN weight, KL similarity",
        lambda: PruningProblem.from_model(with_weight(math.nan), X, keep=0.5, similarity="kl"),
        ValueError,
        NAN_LAYER,
    ),
    (
        "NaN weight, paper's energy",
        lambda: PruningProblem.from_model(with_weight(-math.inf), X, keep=0.5, energy="ipruning"),
        ValueError,
        NAN_LAYER,
    ),
    (
        "NaN BatchNorm scale, bn importance",
        _bn_nan,
        ValueError,
        "group 'stem': importance 'bn' is NaN or infinite (NaN/inf in the BatchNorm parameters, "
        "the gradients or the data batch of its layers 'stem')",
    ),
    (
        "example inputs of the wrong shape",
        lambda: ModelGroups(net(), torch.randn(2, 5, 8, 8)),
        ValueError,
        "the model's forward pass failed on the example inputs (a torch.float32 tensor of "
        "shape (2, 5, 8, 8)): RuntimeError: Given groups=1, weight of size [4, 3, 3, 3], "
        "expected input[2, 5, 8, 8] to have 3 channels, but got 5 channels instead; pass "
        "inputs shaped like one real batch",
    ),
    (
        "example inputs of the wrong width",
        lambda: ModelGroups(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), torch.randn(2, 5)),
        ValueError,
        "the model's forward pass failed on the example inputs (a torch.float32 tensor of "
        "shape (2, 5)): RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x5 and 3x4); "
        "pass inputs shaped like one real batch",
    ),
    (
        "only one-channel layers",
        lambda: ModelGroups(one_channel_everywhere(), X),
        ValueError,
        "no prunable channel group found (every layer is ignored, tied to an ignored layer or "
        "to a custom layer's parameter, or has a single output channel)",
    ),
    (
        "unknown ignored layer",
        lambda: ModelGroups(net(), X, ignored_layers=["nope"]),
        ValueError,
        "ignored layer 'nope' is not a module of the model",
    ),
    ("keep 0", lambda: PruningProblem.from_model(net(), X, keep=0.0), ValueError, KEEP.format(0.0)),
    (
        "keep -0.1",
        lambda: PruningProblem.from_model(net(), X, keep=-0.1),
        ValueError,
        KEEP.format(-0.1),
    ),
    (
        "keep 1.5",
        lambda: PruningProblem.from_model(net(), X, keep=1.5),
        ValueError,
        KEEP.format(1.5),
    ),
    (
        "keep nan",
        lambda: PruningProblem.from_model(net(), X, keep=math.nan),
        ValueError,
        KEEP.format(math.nan),
    ),
    (
        "keep 1.5, baseline",
        lambda: ImportancePruner(net(), X, keep=1.5),
        ValueError,
        KEEP.format(1.5),
    ),
    (
        "keep_by unknown",
        lambda: PruningProblem.from_model(net(), X, keep=0.5, keep_by="flops"),
        ValueError,
        "keep_by must be 'params' or 'macs', got 'flops'",
    ),
    (
        "unknown energy",
        lambda: problem(energy="entropy"),
        ValueError,
        "unknown energy 'entropy'; choose one of ipruning, redundancy, taylor",
    ),
    (
        "unknown importance",
        lambda: problem(importance="l3"),
        ValueError,
        f"unknown importance 'l3'; choose one of {IMPORTANCES}",
    ),
    (
        "unknown similarity",
        lambda: problem(similarity="dot"),
        ValueError,
        "unknown similarity 'dot'; choose one of cosine, kl",
    ),
    (
        "unknown baseline",
        lambda: ImportancePruner(net(), X, importance="l3"),
        ValueError,
        "unknown baseline 'l3'; choose one of l1, random, tp-magnitude, tp-taylor, "
        "tp-global-magnitude, tp-global-taylor, tp-global-bn",
    ),
    (
        "Taylor without targets",
        lambda: problem(importance="taylor"),
        ValueError,
        "importance 'taylor' needs data=(inputs, targets), a labelled batch, got a Tensor (on "
        "the command line it comes from --dataset)",
    ),
    (
        "Torch-Pruning Taylor without targets",
        lambda: ImportancePruner(net(), X, importance="tp-taylor").step(),
        ValueError,
        "importance 'tp-taylor' needs data=(inputs, targets), a labelled batch, got no data "
        "(on the command line it comes from --dataset)",
    ),
    (
        "Taylor with float targets",
        lambda: problem(importance="taylor", data=(X, X)),
        ValueError,
        "importance 'taylor' needs integer class labels of shape (N,) as targets, "
        "got a torch.float32 tensor of shape (2, 3, 8, 8)",
    ),
    (
        "Taylor with labels out of range",
        lambda: problem(importance="taylor", data=(X, torch.tensor([0, 7]))),
        ValueError,
        "importance 'taylor': the loss of the labelled batch cannot be computed (IndexError: "
        "Target 7 is out of bounds.); targets must be one class index in [0, outputs) per "
        "input",
    ),
    (
        "mask too long, energy",
        lambda: problem().energy({"stem": np.ones(5, bool)}),
        ValueError,
        MASK.format("of", "(5,)"),
    ),
    (
        "mask 2-D, prune",
        lambda: ModelGroups(net(), X).prune({"stem": np.ones((1, 4), bool)}),
        ValueError,
        MASK.format("has", "(1, 4)"),
    ),
    (
        "mask for an unknown group, energy",
        lambda: problem().energy({"stem.typo": np.ones(4, bool)}),
        ValueError,
        "masks for unknown groups ['stem.typo']; groups: stem, block.conv1",
    ),
    (
        "mask for an unknown group, prune",
        lambda: ModelGroups(net(), X).prune({"stem.typo": np.ones(4, bool)}),
        UnknownGroupError,
        "masks for unknown groups: ['stem.typo']; groups: stem, block.conv1",
    ),
    (
        "mask keeping nothing",
        lambda: ModelGroups(net(), X).prune({"stem": np.zeros(4, bool)}),
        ValueError,
        "group 'stem': the mask keeps no unit; at least one must stay for the network to "
        "compute anything",
    ),
    (
        "unknown group name",
        lambda: problem().to_bqm("nope"),
        UnknownGroupError,
        "no group named 'nope'; groups: stem, block.conv1",
    ),
    (
        "group index out of range",
        lambda: problem().to_bqm(5),
        IndexError,
        "group index 5 out of range [0, 2)",
    ),
    (
        "unknown solver",
        lambda: problem().solve("nope"),
        ValueError,
        "unknown solver 'nope'; available solvers: <*>",
    ),
]


@pytest.mark.parametrize(
    "action, error, expected", [case[1:] for case in MODEL_CASES], ids=[c[0] for c in MODEL_CASES]
)
def test_model(action, error, expected):
    with pytest.raises(error) as info:
        action()
    check_message(info.value, expected)


def test_unknown_groups_are_value_errors_too():
    """A KeyError for lookups, and a ValueError so the CLI reports it in one line."""
    with pytest.raises(ValueError, match="no group named"):
        ModelGroups(net(), X).by_name("nope")


def test_a_bad_mask_leaves_the_model_untouched():
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = {"stem": np.array([1, 0, 1, 0], bool), "block.conv1": np.zeros(4, bool)}
    with pytest.raises(ValueError, match="block.conv1"):
        ModelGroups(model, X).prune(masks)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "fill", ["zeros", "constant"], ids=["all-zero filters", "constant kernels"]
)
@pytest.mark.parametrize(
    "energy, similarity", [("ipruning", "cosine"), ("redundancy", "kl"), ("redundancy", "cosine")]
)
def test_zero_variance_filters_give_finite_energies(fill, energy, similarity):
    """pinv + log-det term 0 + non-finite -> 1 (ising_qubo/pruning/energies/paper.py)."""
    model = net()
    with torch.no_grad():
        model.stem.weight.fill_(0.0 if fill == "zeros" else 0.25)
        model.stem.bias.zero_()
    prob = PruningProblem.from_model(model, X, keep=0.5, energy=energy, similarity=similarity)
    masks = {g.name: np.arange(g.size) % 2 == 0 for g in prob.groups}
    assert math.isfinite(prob.energy(masks))
    assert math.isfinite(prob.energy(masks, budget=True))
    assert np.isfinite(prob.to_bqm().to_numpy_vectors()[0]).all()
    solution = prob.solve("greedy")
    assert math.isfinite(solution.energy)
    assert solution.kept == prob.keep_counts


@pytest.mark.parametrize(
    "weight",
    [np.zeros((4, 3, 3, 3)), np.full((4, 3, 3, 3), 2.0), np.zeros((4, 1, 3, 3)), np.zeros((4, 6))],
    ids=["zeros", "constant", "one input channel", "zero linear"],
)
def test_zero_variance_kl_and_cosine_are_finite(weight):
    for matrix in (
        kl_matrix(weight),
        redundancy_affinity(weight),
        kl_redundancy(weight),
        cosine_redundancy(weight.reshape(len(weight), -1)),
    ):
        assert matrix.shape == (4, 4) and np.isfinite(matrix).all()


def test_one_channel_layer_is_skipped_not_a_crash():
    model = net(stem_width=1)
    groups = ModelGroups(model, X)
    assert [g.name for g in groups.groups] == ["block.conv1"]
    prob = PruningProblem.from_model(model, X, keep=0.5)
    prob.model_groups.prune(prob.solve("greedy").masks)
    assert model.stem.out_channels == 1 and model(X).shape == (2, 3)


def test_custom_layer_with_own_weight_is_named_and_left_whole():
    """Torch-Pruning would guess the channel dimension of dw.weight (the last non-singleton
    one: the kernel width) and break the network; the tied group stays whole instead."""
    torch.manual_seed(0)
    model = CustomNet()
    with pytest.warns(UserWarning) as record:
        prob = PruningProblem.from_model(model, X, keep=0.5)
    messages = [str(w.message) for w in record]
    assert messages == [
        "parameter 'dw.weight' of module 'dw' (DepthwiseWeight) is not part of a layer "
        "Torch-Pruning can prune, so its channel dimension is unknown: the channel group(s) "
        "'conv1' tied to it stay whole (use standard layers, e.g. nn.Conv2d, to prune them)"
    ]
    assert [g.name for g in prob.groups] == ["conv2"]
    prob.model_groups.prune(prob.solve("greedy").masks)
    assert model.dw.weight.shape == (4, 1, 3, 3) and model(X).shape == (2, 2)


def test_lstm_after_a_pruned_layer_is_supported():
    torch.manual_seed(0)
    model = LSTMNet()
    x = torch.randn(2, 7, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: Torch-Pruning handles nn.LSTM
        prob = PruningProblem.from_model(model, x, keep=0.5)
    assert [g.name for g in prob.groups] == ["fc"]
    prob.model_groups.prune(prob.solve("greedy").masks)
    assert model.lstm.input_size == model.fc.out_features < 6
    assert model(x).shape == (2, 2)


def test_surgery_that_breaks_the_forward_pass_is_reported():
    groups = ModelGroups(net(), X)
    groups.example_inputs = torch.randn(2, 5, 8, 8)  # stands in for a mis-pruned layer
    with pytest.raises(ValueError) as info:
        groups.prune({"stem": np.array([1, 1, 0, 1], bool)})
    check_message(
        info.value,
        "the pruned model's forward pass fails (RuntimeError: <*>): a "
        "layer of this model is not one Torch-Pruning can prune "
        "correctly; pass it in ignored_layers",
    )


# =========================================================================================
# Data
# =========================================================================================

CLASSES = [
    c.encode()
    for c in (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
]


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(
            folder / name,
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": [int(v) for v in rng.integers(0, 10, n)],
            },
        )
    _dump(folder / "batches.meta", {b"label_names": CLASSES})
    return folder


def write_images(folder: Path, count: int = 2, size=(4, 4)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(folder / f"{i}.png")


class Evil:
    """Unpickling this runs ``touch <marker>``: a loader that executes pickles is caught
    by the marker file appearing."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_with(batch_content):
    def setup(root: Path):
        folder = write_cifar10(root)
        target = folder / "test_batch"
        if isinstance(batch_content, bytes):
            target.write_bytes(batch_content)
        elif callable(batch_content):
            batch_content(target)
        else:
            _dump(target, batch_content)
        return lambda: load_dataset("cifar10", root, split="test")

    return setup


def _truncate(target: Path) -> None:
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _fashion_labels(root: Path):
    for prefix, n in (("train", 3), ("t10k", 3)):
        images = np.zeros((n, 28, 28), np.uint8)
        labels = np.array([0, 12, 1][:n], np.uint8)
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            raw = (
                magic.to_bytes(4, "big")
                + np.asarray(array.shape, ">u4").tobytes()
                + array.tobytes()
            )
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(raw))
    return lambda: load_dataset("fashion-mnist", root)


def _images(layout):
    def setup(root: Path):
        for folder, count, size in layout:
            write_images(root / folder, count, size)
        return lambda: load_splits("imagefolder", root)

    return setup


def _corrupt_image(root: Path):
    write_images(root / "train" / "a")
    (root / "train" / "a" / "1.png").write_bytes(b"\x89PNG not really")
    return lambda: load_dataset("imagefolder", root)


CIFAR_HELP = (
    "Pass --data-dir DIR (data_dir=DIR in Python) pointing at a folder containing "
    "'cifar-10-batches-py' (the unpacked cifar-10-python.tar.gz), or use --download "
    "(download=True) when online."
)
BATCH = "{root}/cifar-10-batches-py/test_batch"

# (id, setup(root) -> action, exception type, message: exact, or a regex with ".*")
DATA_CASES = [
    (
        "missing dataset directory",
        lambda root: lambda: load_dataset("cifar10", root / "nowhere"),
        FileNotFoundError,
        "CIFAR-10 not found: no 'cifar-10-batches-py' folder (with batches.meta). Searched "
        "{root}/nowhere (and {root}/nowhere/cifar-10-batches-py). " + CIFAR_HELP,
    ),
    (
        "missing batch file",
        lambda root: (
            (write_cifar10(root) / "data_batch_3").unlink()
            or (lambda: load_dataset("cifar10", root))
        ),
        FileNotFoundError,
        "CIFAR-10 not found: {root}/cifar-10-batches-py/data_batch_3 is missing. Searched "
        "{root} (and {root}/cifar-10-batches-py). " + CIFAR_HELP,
    ),
    (
        "corrupt CIFAR pickle",
        _cifar_with(b"\x80\x02garbage"),
        ValueError,
        BATCH + ": not a readable CIFAR python batch (UnpicklingError: <*>)",
    ),
    (
        "truncated CIFAR pickle",
        _cifar_with(_truncate),
        ValueError,
        BATCH + ": not a readable CIFAR python batch (<*>)",
    ),
    (
        "CIFAR pickle that is not a dict",
        _cifar_with([1, 2, 3]),
        ValueError,
        BATCH + ": expected a pickled dict, found list",
    ),
    (
        "CIFAR labels out of range",
        _cifar_with({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
        ValueError,
        BATCH + ": labels outside [0, 10)",
    ),
    (
        "CIFAR negative label",
        _cifar_with({b"data": np.zeros((2, 3072), np.uint8), b"labels": [-1, 0]}),
        ValueError,
        BATCH + ": labels outside [0, 10)",
    ),
    (
        "CIFAR images of the wrong size",
        _cifar_with({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        ValueError,
        BATCH + ": 'data' must be a uint8 array of shape (N, 3072), found uint8 array of shape "
        "(2, 100)",
    ),
    (
        "CIFAR label count",
        _cifar_with({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
        ValueError,
        BATCH + ": 'labels' must be 2 integers",
    ),
    (
        "Fashion-MNIST labels out of range",
        _fashion_labels,
        ValueError,
        "{root}/train-labels-idx1-ubyte.gz: labels outside [0, 10)",
    ),
    (
        "images of different sizes",
        _images([("train/a", 2, (4, 4)), ("train/b", 1, (5, 4))]),
        ValueError,
        "{root}/train/b/0.png is 4x5 (WxH) but {root}/train/a/0.png is 4x4: all images must "
        "have the same size (pass image_size=... to resize them)",
    ),
    (
        "undecodable image",
        _corrupt_image,
        ValueError,
        "{root}/train/a/1.png: cannot decode image (UnidentifiedImageError: <*>)",
    ),
    (
        "split folder without class folders",
        _images([("train", 2, (4, 4))]),
        FileNotFoundError,
        "{root}/train: it has no class folders; 2 image(s) lie directly in it (put them in one "
        "folder per class: train/<class>/*.png)",
    ),
    (
        "images directly in the data directory",
        _images([(".", 3, (4, 4))]),
        FileNotFoundError,
        "{root}: 3 image(s) lie directly in it, without class folders (the class of an image "
        "is the name of its folder): expected DIR/train/<class>/*.png|jpg (and "
        "DIR/test/<class>/...), or class folders directly in DIR. Pass --data-dir DIR "
        "(data_dir=DIR in Python) pointing at such a folder.",
    ),
    (
        "missing image folder",
        lambda root: lambda: load_dataset("imagefolder", root / "nowhere"),
        FileNotFoundError,
        "image folder {root}/nowhere does not exist. Pass --data-dir DIR (data_dir=DIR in "
        "Python) pointing at a folder laid out as DIR/train/<class>/*.png|jpg (and "
        "DIR/test/<class>/...).",
    ),
    (
        "image folder without data_dir",
        lambda root: lambda: load_dataset("imagefolder"),
        ValueError,
        "imagefolder needs data_dir (--data-dir DIR): a folder laid out as "
        "DIR/train/<class>/*.png|jpg and DIR/test/<class>/...",
    ),
    (
        "unknown dataset",
        lambda root: lambda: load_dataset("mnist3d", root),
        ValueError,
        "unknown dataset 'mnist3d'; choose one of cifar10, cifar100, fashion-mnist, imagefolder",
    ),
    (
        "validation larger than the data",
        lambda root: write_cifar10(root) and (lambda: load_dataset("cifar10", root, val_size=50)),
        ValueError,
        "val_size=50 must be between 1 and 19 (the train split has 20 images)",
    ),
    (
        "labels outside the classes",
        lambda root: (
            lambda: ImageDataset(
                torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
                torch.tensor([0, 3]),
                ["a", "b", "c"],
                "x",
                (0.5,) * 3,
                (0.2,) * 3,
            )
        ),
        ValueError,
        "labels must lie in [0, 3)",
    ),
]


@pytest.mark.parametrize(
    "setup, error, expected", [case[1:] for case in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_data(tmp_path, setup, error, expected):
    root = tmp_path.resolve()
    action = setup(root)
    with pytest.raises(error) as info:
        action()
    check_message(info.value, expected, root=root)


def test_cifar_pickle_with_code_is_refused_not_run(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": Evil(marker)})
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", tmp_path, split="test")
    check_message(
        info.value,
        "{root}/cifar-10-batches-py/test_batch: not a readable CIFAR python batch "
        "(UnpicklingError: refusing to load global posix.system (not a numpy array))",
        root=tmp_path,
    )
    assert not marker.exists()


# =========================================================================================
# Checkpoints, weights files, saved models
# =========================================================================================


def _evil_torch(path: Path, marker: Path) -> None:
    torch.save({"model": Evil(marker)}, path)


def _evil_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Evil(marker)))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the raw pickle
@pytest.mark.parametrize("write", [_evil_torch, _evil_pickle], ids=["torch.save", "pickle"])
@pytest.mark.parametrize("loader", ["load_checkpoint", "load_weights", "pipeline"])
def test_malicious_pickle_is_refused_not_run(tmp_path, write, loader):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    write(path, marker)
    reason = (
        "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
        if write is _evil_torch
        else "Unsupported operand 149"
    )
    expected = (
        f"checkpoint '{path}' cannot be loaded as plain data (not written by "
        f"save_checkpoint, corrupt, or unsafe; nothing in it was executed): {reason}"
    )
    if loader == "load_checkpoint":
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        check_message(info.value, expected)
    elif loader == "load_weights":
        with pytest.raises(CheckpointError) as info:
            load_weights(build("resnet20"), path)
        check_message(info.value, expected)
    else:
        # load_checkpoint_weights (--checkpoint of prune/train/export): the same refusal
        from ising_qubo.pruning.starting_point import load_checkpoint_weights as _load_weights

        with pytest.raises(ValueError) as info:
            _load_weights(build("resnet20"), path)
        message = str(info.value)
        assert "\n" not in message and message.startswith("--checkpoint: checkpoint ")
        assert "nothing in it was executed" in message
    assert not marker.exists()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = build("resnet20")
    groups = ModelGroups(model, torch.randn(1, 3, 32, 32))
    groups.prune({g.name: np.arange(g.size) % 2 == 0 for g in groups.groups[:3]})
    return save_pruned(model, tmp_path_factory.mktemp("saved") / "model")


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (ARCHITECTURE_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _tamper(change):
    def setup(saved: Path, root: Path):
        model = _copy_model(saved, root / "model")
        arch = model / ARCHITECTURE_FILE
        if isinstance(change, str):
            arch.write_text(change)
        else:
            data = json.loads(arch.read_text())
            change(data)
            arch.write_text(json.dumps(data))
        return lambda: load_pruned(model)

    return setup


def _set(*path_and_value):
    *path, value = path_and_value

    def change(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


def _truncated_weights(saved: Path, root: Path):
    model = _copy_model(saved, root / "model")
    weights = model / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    return lambda: load_pruned(model)


def _other_model_weights(saved: Path, root: Path):
    path = root / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    return lambda: load_weights(build("resnet20"), path)


def _other_model_weights_pipeline(saved: Path, root: Path):
    from ising_qubo.pruning.starting_point import load_checkpoint_weights as _load_weights

    path = root / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    return lambda: _load_weights(build("resnet20"), path)


def _wrong_classes(saved: Path, root: Path):
    path = root / "w.safetensors"
    safetensors.torch.save_file(build("resnet20", num_classes=100).state_dict(), str(path))
    return lambda: load_weights(build("resnet20"), path)


def _truncated_checkpoint(saved: Path, root: Path):
    path = save_checkpoint(root / "checkpoint.pt", model={"w": torch.zeros(100)}, epoch=1)
    path.write_bytes(path.read_bytes()[:200])
    return lambda: load_checkpoint(path)


def _not_a_state_dict(saved: Path, root: Path):
    path = save_checkpoint(root / "c.pt", epoch=3, lr=0.1)
    return lambda: load_weights(build("resnet20"), path)


ARCH = "{root}/model/architecture.json"

# (id, setup(saved model dir, root) -> action, exception type, message: exact or regex)
CHECKPOINT_CASES = [
    (
        "architecture.json not JSON",
        _tamper("{not json"),
        ValueError,
        ARCH + ": not valid JSON: <*>",
    ),
    (
        "architecture.json of another format",
        _tamper(_set("format", "pickle/1")),
        ValueError,
        ARCH + ": format must be 'ising-qubo-pruned/1', got 'pickle/1'",
    ),
    (
        "architecture.json: a dunder attribute",
        _tamper(_set("modules", "conv1", "__class__", 1)),
        ValueError,
        ARCH + ": module 'conv1': unknown attribute '__class__' (allowed: <*>)",
    ),
    (
        "architecture.json: negative channels",
        _tamper(_set("modules", "conv1", "out_channels", -3)),
        ValueError,
        ARCH + ": module 'conv1': attribute 'out_channels' must be a non-negative integer or a "
        "list of them, got -3",
    ),
    (
        "architecture.json: another module type",
        _tamper(_set("modules", "conv1", "type", "Linear")),
        ValueError,
        ARCH + ": module 'conv1' is recorded as Linear but the skeleton has a Conv2d",
    ),
    (
        "architecture.json: channels that do not fit the weights",
        _tamper(_set("modules", "conv1", "out_channels", 15)),
        ValueError,
        "{root}/model/model.safetensors: tensor 'conv1.weight' has shape [8, 3, 3, 3], but "
        "module 'conv1' as recorded in architecture.json needs [15, 3, 3, 3]",
    ),
    (
        "architecture.json: unknown model",
        _tamper(_set("spec", "name", "os.system")),
        ValueError,
        ARCH + ": cannot rebuild the architecture: unknown model 'os.system'; <*>",
    ),
    (
        "architecture.json: extra builder argument",
        _tamper(_set("spec", "kwargs", "__import__", "os")),
        ValueError,
        ARCH + ": cannot rebuild the architecture: model spec kwargs: unexpected "
        "['__import__']; allowed: <*>",
    ),
    (
        "architecture.json: parameter count",
        _tamper(_set("num_parameters", 12)),
        ValueError,
        ARCH + ": records 12 parameters, the rebuilt model has <*>",
    ),
    (
        "architecture.json from another save",
        _tamper(_set("save_id", "0" * 32)),
        ValueError,
        "{root}/model/model.safetensors and architecture.json come from different saves (an "
        "interrupted or mixed-up save); save the model again",
    ),
    (
        "truncated safetensors",
        _truncated_weights,
        ValueError,
        "{root}/model/model.safetensors: not a readable safetensors file: <*>",
    ),
    (
        "not a model directory",
        lambda saved, root: lambda: load_pruned(root),
        ValueError,
        "no saved model at {root}: neither {root}/architecture.json nor "
        "{root}/model/architecture.json (where a run directory of 'ising-qubo prune --out' "
        "keeps it) exists; pass the directory that save_pruned wrote, or a run directory",
    ),
    (
        "a file instead of a model directory",
        lambda saved, root: lambda: load_pruned(saved / WEIGHTS_FILE),
        ValueError,
        f"{{saved}}/{WEIGHTS_FILE} is not a directory; pass the directory that save_pruned wrote",
    ),
    (
        "weights of another model",
        _other_model_weights,
        CheckpointError,
        "weights file '{root}/other.pt' does not fit the CifarResNet model: 'conv1.weight' is "
        "missing from the file (130 mismatching key(s) in all); pass weights saved from the "
        "same --model and number of classes",
    ),
    (
        "weights for another number of classes",
        _wrong_classes,
        CheckpointError,
        "weights file '{root}/w.safetensors' does not fit the CifarResNet model: "
        "'fc.weight' has shape [100, 64] in the file but [10, 64] in the model (2 "
        "mismatching key(s) in all); pass weights saved from the same --model and number of "
        "classes",
    ),
    (
        "weights of another model, pipeline",
        _other_model_weights_pipeline,
        ValueError,
        "--checkpoint: weights file '{root}/other.pt' does not fit the CifarResNet model: "
        "'conv1.weight' is missing from the file (130 mismatching key(s) in all); pass weights "
        "saved from the same --model and number of classes",
    ),
    (
        "truncated checkpoint",
        _truncated_checkpoint,
        CheckpointError,
        "checkpoint '{root}/checkpoint.pt' is unreadable (truncated or corrupt?): "
        "PytorchStreamReader failed reading zip archive: failed finding central directory",
    ),
    (
        "checkpoint without weights",
        _not_a_state_dict,
        CheckpointError,
        "weights file '{root}/c.pt' is not a state dict: entry 'epoch' is not a tensor (int)",
    ),
    (
        "missing weights file",
        lambda saved, root: lambda: load_weights(build("resnet20"), root / "nope.pt"),
        FileNotFoundError,
        "weights file '{root}/nope.pt' not found",
    ),
]


@pytest.mark.parametrize(
    "setup, error, expected",
    [case[1:] for case in CHECKPOINT_CASES],
    ids=[c[0] for c in CHECKPOINT_CASES],
)
def test_checkpoint(tmp_path, saved_model, setup, error, expected):
    action = setup(saved_model, tmp_path)
    with pytest.raises(error) as info:
        action()
    check_message(info.value, expected, root=tmp_path, saved=saved_model)


def test_tampered_spec_cannot_make_loading_allocate(tmp_path, saved_model):
    """A spec asking for 10^9 classes: the skeleton lives on the meta device, so loading
    allocates only what the file holds and the model is the saved one."""
    model_dir = _copy_model(saved_model, tmp_path / "model")
    _set("spec", "kwargs", "num_classes", 10**9)(
        data := json.loads((model_dir / ARCHITECTURE_FILE).read_text())
    )
    (model_dir / ARCHITECTURE_FILE).write_text(json.dumps(data))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_pruned(model_dir)(x), load_pruned(saved_model)(x))


# =========================================================================================
# Command line: exit code 2, exactly one stderr line, no traceback
# =========================================================================================


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, saved_model):
    root = tmp_path_factory.mktemp("cli")
    files = {"root": root, "model": saved_model}
    (files.setdefault("empty", root / "empty.gset")).write_text("")
    (files.setdefault("nan", root / "nan.gset")).write_text("3 2\n1 2 1\n2 3 nan\n")
    (files.setdefault("huge", root / "huge.gset")).write_text("100000000 5\n")
    (files.setdefault("bqp", root / "two.bqp")).write_text(TWO_BQP)
    (files.setdefault("good", root / "good.gset")).write_text("3 2\n1 2 1\n2 3 1\n")
    (files.setdefault("json", root / "nan.json")).write_text(_json_doc([math.nan, 1.0]))
    files["marker"] = root / "pwned"
    _evil_torch(files.setdefault("evil", root / "evil.pt"), files["marker"])
    torch.save(nn.Linear(3, 2).state_dict(), files.setdefault("other", root / "other.pt"))
    (files.setdefault("trunc", root / "trunc.safetensors")).write_bytes(b"\x10\x00" * 5)
    torch.manual_seed(0)
    model = build("resnet20")
    with torch.no_grad():
        model.layer1[0].conv1.weight[3, 0, 0, 0] = math.nan
    safetensors.torch.save_file(
        model.state_dict(), str(files.setdefault("nanweights", root / "nan.safetensors"))
    )
    write_cifar10(files.setdefault("cifar", root / "data"), n=2)
    return files


EVIL_LINE = (
    "checkpoint '{evil}' cannot be loaded as plain data (not written by "
    "save_checkpoint, corrupt, or unsafe; nothing in it was executed): Trying to load "
    "unsupported GLOBAL posix.system whose module posix is blocked."
)

# (id, arguments ({name} = a file of cli_files), the message after "ising-qubo: error: ")
CLI_CASES = [
    ("solve an empty file", ["solve", "{empty}"], "{empty}: empty file"),
    (
        "solve a NaN file",
        ["solve", "{nan}"],
        "{nan}:3: edge weight must be a finite number, got 'nan'",
    ),
    (
        "solve a huge header",
        ["solve", "{huge}"],
        "{huge}:1: node count N = 100000000 is more than this reader accepts (10,000,000); the "
        "header is probably corrupt",
    ),
    (
        "solve a multi-instance file without --instance",
        ["solve", "{bqp}"],
        "{bqp} holds 2 instances; pass --instance 1..2 to choose one",
    ),
    (
        "info on a wrong instance",
        ["info", "{bqp}", "--instance", "5"],
        "{bqp}: instance 5 is out of range; the file holds 2 instances, pass --instance 1..2",
    ),
    (
        "convert a NaN JSON",
        ["convert", "{json}", "{root}/out.coo"],
        "{json}: the linear bias of variable 0 is nan; every bias must be a finite number",
    ),
    (
        "unknown solver parameter",
        ["solve", "{good}", "--solver", "greedy", "--param", "bogus=1"],
        "solver 'greedy' has no parameter bogus; its parameters: <*>",
    ),
    (
        "option the solver does not take",
        ["solve", "{good}", "--solver", "greedy", "--time-limit", "1"],
        "solver 'greedy' does not take --time-limit; its parameters: <*>",
    ),
    (
        "prune with --keep 1.5",
        ["prune", "--keep", "1.5", "--out", "{root}/run1"],
        "--keep must be a fraction in (0, 1], got 1.5",
    ),
    (
        "prune with --keep 0",
        ["prune", "--keep", "0", "--out", "{root}/run1"],
        "--keep must be a fraction in (0, 1], got 0.0",
    ),
    (
        "prune with --keep nan",
        ["prune", "--keep", "nan", "--out", "{root}/run1"],
        "--keep must be a fraction in (0, 1], got nan",
    ),
    (
        "prune with a missing --data-dir",
        ["prune", "--out", "{root}/run2", "--data-dir", "{root}/nowhere"],
        "CIFAR-10 not found: no 'cifar-10-batches-py' folder (with batches.meta). Searched "
        "{root}/nowhere (and {root}/nowhere/cifar-10-batches-py). " + CIFAR_HELP,
    ),
    (
        "prune with an unknown method",
        ["prune", "--method", "magic", "--out", "{root}/run3"],
        "unknown method 'magic'; choose one of ising, l1, random, tp-magnitude, tp-taylor, "
        "tp-global-magnitude, tp-global-taylor, tp-global-bn, none",
    ),
    (
        "prune --checkpoint with code in it",
        [
            "prune",
            "--out",
            "{root}/run4",
            "--data-dir",
            "{cifar}",
            "--checkpoint",
            "{evil}",
            "--no-progress",
        ],
        "--checkpoint: checkpoint '{evil}' cannot be loaded as plain data (not written by "
        "save_checkpoint, corrupt, or unsafe; nothing in it was executed): Trying to load "
        "unsupported GLOBAL posix.system whose module posix is blocked.",
    ),
    (
        "train --checkpoint of another model",
        [
            "train",
            "--out",
            "{root}/run5",
            "--data-dir",
            "{cifar}",
            "--checkpoint",
            "{other}",
            "--no-progress",
        ],
        "--checkpoint: weights file '{other}' does not fit the CifarResNet model: "
        "'conv1.weight' is missing from the file (130 mismatching key(s) in all); pass weights "
        "saved from the same --model and number of classes",
    ),
    (
        "evaluate a directory that is not a model",
        ["evaluate", "{root}"],
        "no saved model at {root}: neither {root}/architecture.json nor "
        "{root}/model/architecture.json (where a run directory of 'ising-qubo prune --out' "
        "keeps it) exists; pass the directory that save_pruned wrote, or a run directory",
    ),
    (
        "evaluate a missing directory",
        ["evaluate", "{root}/nowhere"],
        "no saved model at {root}/nowhere: the directory does not exist",
    ),
    (
        "export an unknown --model",
        ["export", "--model", "resnet21", "--out", "{root}/q1"],
        "unknown model 'resnet21'; available: <*>",
    ),
    (
        "export --checkpoint with code in it",
        ["export", "--checkpoint", "{evil}", "--out", "{root}/q2"],
        "--checkpoint: " + EVIL_LINE,
    ),
    (
        "export --checkpoint of another model",
        ["export", "--checkpoint", "{other}", "--out", "{root}/q3"],
        "--checkpoint: weights file '{other}' does not fit the CifarResNet model: "
        "'conv1.weight' is missing from the file (130 mismatching key(s) in all); pass weights "
        "saved from the same --model and number of classes",
    ),
    (
        "export --checkpoint truncated safetensors",
        ["export", "--checkpoint", "{trunc}", "--out", "{root}/q4"],
        "--checkpoint: weights file '{trunc}' is not a readable safetensors file: <*>",
    ),
    (
        "export --checkpoint with NaN weights",
        ["export", "--checkpoint", "{nanweights}", "--out", "{root}/q5"],
        "layer 'layer1.0.conv1' (Conv2d, weight shape (16, 16, 3, 3)) has 1 NaN or infinite "
        "weight(s), the first in output channel 3: the energy cannot be built (did training "
        "diverge? lower the learning rate or restart from a finite checkpoint)",
    ),
    (
        "export Taylor importance without data",
        ["export", "--importance", "taylor", "--out", "{root}/q6"],
        "importance 'taylor' needs data=(inputs, targets), a labelled batch, got a Tensor (on "
        "the command line it comes from --dataset)",
    ),
    (
        "export an unknown importance",
        ["export", "--importance", "l3", "--out", "{root}/q7"],
        f"unknown importance 'l3'; choose one of {IMPORTANCES}",
    ),
]


@pytest.mark.parametrize(
    "argv, expected", [case[1:] for case in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli(cli_files, capsys, argv, expected):
    names = {k: str(v) for k, v in cli_files.items()}
    argv = [re.sub(r"\{(\w+)\}", lambda m: names[m.group(1)], arg) for arg in argv]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are not errors; stderr is checked below
        code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    check_message(lines[0], "ising-qubo: error: " + expected, **names)
    assert not cli_files["marker"].exists()
