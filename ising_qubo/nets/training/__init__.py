"""Generic training machinery for the pruning pipeline: one module per job.

* :mod:`.placement`: the device (:func:`resolve_device`) and moving a model there
  (:func:`prepare_model`);
* :mod:`.optim`: optimisers and per-iteration learning-rate schedules;
* :mod:`.metrics`: top-k accuracy and :func:`evaluate`;
* :mod:`.hooks`: :class:`TrainingHook` and :class:`UnitDropout` (masked-unit dropout);
* :mod:`.loop`: :func:`train_one_epoch` (the order in which it calls the hooks is in that
  module's docstring);
* :mod:`.history`: per-epoch metrics (:class:`History`);
* :mod:`.checkpoints`: atomic, plain-data checkpoints and weights files.

Nothing here knows about energies or solvers. The pipeline drives the Ising dropout through
:class:`UnitDropout`: whenever the solver returns a new state it calls
:meth:`UnitDropout.set_slices` with the (parameter, dim, indices) of the dropped units, and
the hook, passed to :func:`train_one_epoch` (or called by hand from any loop, in the spirit
of Torch-Pruning's ``step()``), keeps those units at zero in the forward pass and leaves
their stored weights untouched by the optimizer.
"""

from ising_qubo.nets.training.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_weights,
    save_checkpoint,
    torch_load_reason,
)
from ising_qubo.nets.training.history import History
from ising_qubo.nets.training.hooks import TrainingHook, UnitDropout
from ising_qubo.nets.training.loop import train_one_epoch
from ising_qubo.nets.training.metrics import accuracy_topk, evaluate
from ising_qubo.nets.training.optim import make_optimizer, make_scheduler
from ising_qubo.nets.training.placement import prepare_model, resolve_device

__all__ = [
    "CheckpointError",
    "History",
    "TrainingHook",
    "UnitDropout",
    "accuracy_topk",
    "evaluate",
    "load_checkpoint",
    "load_weights",
    "make_optimizer",
    "make_scheduler",
    "prepare_model",
    "read_weights",
    "resolve_device",
    "save_checkpoint",
    "torch_load_reason",
    "train_one_epoch",
]
