"""Arguments and handlers of ``ising-qubo prune | train | export | evaluate``.

Parsing only: every handler fills a config and calls the library (``pipeline.run``,
``export.export_problem``, ``persist.load_pruned`` + ``training.evaluate``). ``prune`` and
``train`` run data-parallel when started by ``torchrun`` (``torchrun --nproc-per-node N
-m ising_qubo prune ...``); nothing else in the command changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ising_qubo.cli.options import add_progress_flags, parse_key_values
from ising_qubo.pruning.energies import ENERGIES, SIMILARITIES

DATASETS = ("cifar10", "cifar100", "fashion-mnist", "imagefolder")

_PARALLEL = (
    "Data-parallel on several GPUs or machines when started by torchrun, e.g. "
    "'torchrun --nproc-per-node 4 -m ising_qubo prune --device cuda ...': "
    "--batch-size is then the global batch, and only rank 0 writes to --out."
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``prune``, ``train``, ``export`` and ``evaluate`` to the ``ising-qubo``
    subcommands."""
    prune = commands.add_parser(
        "prune",
        help="train with Ising-dropout, prune for real, fine-tune",
        description="Train with Ising-dropout, prune for real, fine-tune. " + _PARALLEL,
    )
    add_run_arguments(prune, default_method="ising")
    prune.set_defaults(handler=cmd_run)
    train = commands.add_parser(
        "train",
        help="the same run with a baseline method (l1, random, tp-magnitude, tp-taylor) or none",
        description="The prune run with a baseline method (l1, "
        "random, tp-magnitude, tp-taylor) or none. " + _PARALLEL,
    )
    add_run_arguments(train, default_method="l1")
    train.set_defaults(handler=cmd_run)
    export = commands.add_parser(
        "export", help="write a network's pruning QUBOs, one file per group"
    )
    add_export_arguments(export)
    export.set_defaults(handler=cmd_export)
    evaluate = commands.add_parser("evaluate", help="top-1/top-5 of a saved (pruned) model")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_data(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """The data options: all of them for ``prune``/``train``; for ``evaluate``
    (``training=False``) only those that apply to the test split."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="cifar10", choices=DATASETS, help="image dataset")
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="dataset folder (CIFAR: contains cifar-10-batches-py; imagefolder: "
        "train/ and test/ class folders; fashion-mnist: the idx files)",
    )
    group.add_argument(
        "--download",
        action="store_true",
        help="download CIFAR / Fashion-MNIST into --data-dir when missing",
    )
    group.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="evaluate on a class-stratified subset of N test images (default: all)",
    )
    if not training:
        group.add_argument(
            "--batch-size", type=int, default=256, metavar="N", help="images per forward pass"
        )
        return
    group.add_argument(
        "--train-subset",
        type=int,
        metavar="N",
        help="use a class-stratified subset of N training images",
    )
    group.add_argument(
        "--val-size",
        type=int,
        default=0,
        metavar="N",
        help="hold out N training images for validation (the paper: 5000)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=128,
        metavar="N",
        help="the GLOBAL batch: under torchrun with N processes each takes "
        "batch-size/N per step (N must divide it), so the run follows the "
        "single-process one (same learning-rate schedule and iterations)",
    )


def _add_energy(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pruning problem")
    group.add_argument(
        "--energy", default="redundancy", choices=ENERGIES, help="energy model of the problem"
    )
    group.add_argument(
        "--keep",
        type=float,
        default=0.5,
        help="fraction of parameters (or MACs, or latency: --keep-by) to keep",
    )
    group.add_argument(
        "--keep-by",
        default="params",
        choices=("params", "macs", "latency"),
        help="what --keep counts: parameters, multiply-accumulates, or the latency "
        "measured on the model's device at batch 1 (latency: --budget global only)",
    )
    group.add_argument(
        "--budget",
        default="uniform",
        choices=("uniform", "global"),
        help="uniform: every layer keeps the same fraction of its channels; global: one "
        "limit on the really pruned model's parameters (or MACs) over the whole network, "
        "the solver decides how many channels each layer keeps (ising method; export: "
        "manifest.json holds the budget)",
    )
    group.add_argument(
        "--min-keep",
        type=float,
        default=0.1,
        metavar="F",
        help="with --budget global: every layer keeps at least max(1, ceil(F x its "
        "channels)), F in [0, 1) (the paper's 10%%)",
    )
    group.add_argument(
        "--importance",
        default="l1",
        help="fields of the redundancy energy: l1, l2, bn, taylor, random",
    )
    group.add_argument(
        "--similarity",
        default="cosine",
        choices=SIMILARITIES,
        help="how the redundancy energy compares two channels' feature maps",
    )


def add_run_arguments(parser: argparse.ArgumentParser, default_method: str) -> None:
    parser.add_argument(
        "--model",
        default="resnet20",
        help="network: resnet20, resnet56, resnet18..101, alexnet, "
        "squeezenet1_1, or torchvision.NAME",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="start from trained weights (.safetensors, a state dict .pt, a "
        "run's checkpoint.pt, or a model directory saved by this tool)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted run in --out"
    )
    parser.add_argument(
        "--method",
        default=default_method,
        help="ising, or a baseline at the same budget: l1, random, tp-magnitude, tp-taylor "
        "(every layer keeps the same fraction), tp-global-magnitude, tp-global-taylor, "
        "tp-global-bn (Torch-Pruning's global pruning: one threshold decides what each "
        "layer keeps); none trains without pruning",
    )
    parser.add_argument(
        "--solver", default="torch-sa", help="solver name (ising method; see 'ising-qubo solvers')"
    )
    parser.add_argument(
        "--solver-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a solver parameter, VALUE parsed as JSON if possible "
        "(e.g. --solver-param num_sweeps=500)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=1,
        metavar="K",
        help="ising method: of the solution and the K-1 best other distinct states the "
        "solver returned (each on the budget), keep the one whose pruned network has the "
        "lowest loss on a held-out batch of training images (not the calibration batch; "
        "no training); 1 keeps the solution",
    )
    _add_energy(parser)
    _add_data(parser)
    group = parser.add_argument_group("training")
    group.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="training epochs (Ising-dropout active for the ising method)",
    )
    group.add_argument(
        "--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning"
    )
    group.add_argument(
        "--freeze-epoch",
        type=int,
        metavar="E",
        help="freeze the Ising state after epoch E (0-based)",
    )
    group.add_argument(
        "--resolve-every",
        type=int,
        default=20,
        metavar="N",
        help="re-solve the Ising state every N iterations (0: once)",
    )
    group.add_argument(
        "--patience",
        type=int,
        default=5,
        help="freeze after N re-solves without energy improvement",
    )
    group.add_argument(
        "--optimizer", default="sgd", choices=("sgd", "adadelta"), help="training optimizer"
    )
    group.add_argument(
        "--lr", type=float, help="learning rate (default: 0.1 for sgd, 1.0 for adadelta)"
    )
    group.add_argument(
        "--finetune-lr", type=float, help="fine-tuning learning rate (default: from --lr)"
    )
    group.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    group.add_argument(
        "--schedule",
        default="cosine",
        choices=("cosine", "step", "constant"),
        help="learning-rate schedule",
    )
    group.add_argument(
        "--step-size",
        type=int,
        metavar="EPOCHS",
        help="step schedule: epochs between decays (default: max(1, epochs // 4))",
    )
    group.add_argument(
        "--gamma", type=float, default=0.1, help="step schedule: learning-rate factor per decay"
    )
    group.add_argument("--seed", type=int, default=0, help="random seed of the whole run")
    group.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:N (under torchrun: auto, cpu or cuda; each "
        "process then takes GPU LOCAL_RANK)",
    )
    group.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    group.add_argument("--channels-last", action="store_true", help="(CUDA only)")
    add_progress_flags(parser)


def _config(args: argparse.Namespace):
    from ising_qubo.pruning.pipeline import RunConfig

    return RunConfig(
        out=args.out,
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        method=args.method,
        energy=args.energy,
        solver=args.solver,
        solver_params=parse_key_values(args.solver_param, "--solver-param"),
        keep=args.keep,
        keep_by=args.keep_by,
        budget=args.budget,
        min_keep=args.min_keep,
        importance=args.importance,
        similarity=args.similarity,
        refine=args.refine,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        freeze_epoch=args.freeze_epoch,
        resolve_every=args.resolve_every,
        patience=args.patience,
        optimizer=args.optimizer,
        lr=args.lr,
        finetune_lr=args.finetune_lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        schedule=args.schedule,
        step_size=args.step_size,
        gamma=args.gamma,
        batch_size=args.batch_size,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        val_size=args.val_size,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        checkpoint=args.checkpoint,
        # None: bars where stderr is a terminal; --quiet also hides the status lines
        progress=False if args.no_progress or args.quiet else None,
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _accuracy_line(report: dict, metric: str) -> str:
    """``top-1 A% after N training epochs (before pruning) -> B% right after pruning ->
    C% after M fine-tuning epochs``: each number with the training behind it, so that the
    gain of the fine-tuning epochs is not read as a gain of pruning."""
    accuracy, epochs = report["accuracy"], report["accuracy"].get("epochs", {})
    name = "top-1" if metric == "top1" else "top-5"
    parts = [f"{accuracy['before'][metric]:.2f}%"]
    if "train" in epochs:
        parts[0] += f" after {_plural(epochs['train'], 'training epoch')} (before pruning)"
    if accuracy.get("after_surgery"):
        parts.append(f"{accuracy['after_surgery'][metric]:.2f}% right after pruning")
    last = f"{accuracy['after'][metric]:.2f}%"
    if "finetune" in epochs:
        last += f" after {_plural(epochs['finetune'], 'fine-tuning epoch')}"
    return f"{name} " + " -> ".join([*parts, last])


def cmd_run(args: argparse.Namespace) -> int:
    from ising_qubo.nets.distributed import launched_rank
    from ising_qubo.pruning.pipeline import run

    report = run(_config(args), resume=args.resume)
    if launched_rank() != 0:  # under torchrun the main process speaks for the run
        return 0
    print(
        f"parameters {report['params']['before']:,} -> {report['params']['after']:,} "
        f"({100 * report['params']['kept_fraction']:.1f}% kept), MACs "
        f"{100 * report['macs']['kept_fraction']:.1f}% kept"
    )
    for metric in ("top1", "top5"):
        print(_accuracy_line(report, metric))
    print(f"report: {Path(args.out) / 'report.json'}, model: {Path(args.out) / 'model'}")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet20", help="network (as for prune --model)")
    parser.add_argument(
        "--checkpoint", metavar="FILE", help="trained weights (default: fresh initialisation)"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        default=10,
        help="outputs of the network's classifier",
    )
    parser.add_argument(
        "--in-channels", type=int, metavar="N", default=3, help="channels of an input image"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        default=32,
        help="side of the calibration images in pixels",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the QUBO files and manifest.json"
    )
    parser.add_argument(
        "--format", default="coo", help="file format of each QUBO (see 'ising-qubo formats')"
    )
    parser.add_argument(
        "--no-budget",
        action="store_true",
        help="leave the budget penalty out of the files (a --budget global budget is never "
        "in them: manifest.json holds it)",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        help="take the calibration batch (feature maps, Taylor) from data",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="dataset folder (as for prune)")
    parser.add_argument(
        "--calibration-size",
        type=int,
        metavar="N",
        default=128,
        help="images in the calibration batch",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (weights, batch)")
    _add_energy(parser)
    add_progress_flags(parser)


def cmd_export(args: argparse.Namespace) -> int:
    from ising_qubo.pruning.export import export_problem

    problem = export_problem(
        args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        image_size=args.image_size,
        dataset=args.dataset,
        data_dir=args.data_dir,
        calibration_size=args.calibration_size,
        seed=args.seed,
        format=args.format,
        budget=not args.no_budget,
        energy=args.energy,
        keep=args.keep,
        keep_by=args.keep_by,
        budget_mode=args.budget,
        min_keep=args.min_keep,
        importance=args.importance,
        similarity=args.similarity,
    )
    print(
        f"{len(problem.groups)} groups, {problem.num_variables} variables -> {args.out} "
        f"(manifest.json maps variables to modules and channels)"
    )
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", metavar="DIR", help="a model directory saved by this tool, or a run directory"
    )
    _add_data(parser, training=False)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON line, for scripts"
    )
    add_progress_flags(parser, "print no progress bars; the result is still printed")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ising_qubo.io.jsonvalues import dumps
    from ising_qubo.nets import data as data_module
    from ising_qubo.nets.persist import load_pruned
    from ising_qubo.nets.training import evaluate, resolve_device
    from ising_qubo.pruning.groups import count_params

    device = resolve_device(args.device)
    model = load_pruned(args.model_dir, map_location=str(device))
    bars = not (args.no_progress or args.quiet)  # drawn on a terminal only
    test = data_module.load_dataset(
        args.dataset,
        args.data_dir,
        "test",
        download=args.download,
        subset=args.test_subset,
        progress=bars,
    )
    loader = data_module.BatchLoader(test, args.batch_size, shuffle=False, device=device)
    result = evaluate(model, loader, progress=bars)
    summary = {
        "params": count_params(model),
        "top1": result["top1"],
        "top5": result["top5"],
        "count": result["count"],
    }
    if args.json:
        print(dumps(summary, indent=None))
    else:
        print(
            f"top-1 {summary['top1']:.2f}%, top-5 {summary['top5']:.2f}% on {summary['count']:,} "
            f"test images; {summary['params']:,} parameters"
        )
    return 0
