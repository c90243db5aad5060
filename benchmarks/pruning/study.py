"""The CPU-scale pruning study: Ising selection against simple criteria at equal budgets.

    python benchmarks/pruning/study.py --cifar-dir DIR [--fashion-dir DIR] --out DIR

For each dataset and seed one dense ResNet-20 is trained and shared by every method.
Each method then starts from it with the same budget: one epoch of pre-pruning training
(Ising-dropout for the Ising variants, plain training for the baselines, after which
they select), structural pruning to the same fraction of parameters, and the same
fine-tuning epochs. Writes ``study.json`` (raw), ``results.md`` (tables) and
``accuracy_vs_pruned.png`` into ``--out``; ``--docs`` also copies the markdown and the
figure into ``docs/``. Every run goes through ``ising_qubo.pruning.pipeline.run``, exactly what
``ising-qubo prune`` / ``train`` do.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from ising_qubo.nets.persist import load_pruned
from ising_qubo.pruning.pipeline import RunConfig, run

METHODS = {
    # name: (method, energy, solver, solver parameters)
    "ising paper energy + de": (
        "ising",
        "ipruning",
        "de",
        {"num_generations": 20, "population_size": 8},
    ),
    "ising paper energy + torch-sa": ("ising", "ipruning", "torch-sa", {}),
    "ising redundancy + torch-sa": ("ising", "redundancy", "torch-sa", {}),
    "ising redundancy + cpsat": ("ising", "redundancy", "cpsat", {"time_limit": 1.0}),
    "l1": ("l1", "redundancy", "torch-sa", {}),
    "random": ("random", "redundancy", "torch-sa", {}),
    "tp-magnitude": ("tp-magnitude", "redundancy", "torch-sa", {}),
}
SWEEP_BASELINES = ("l1", "random")


def latency_ratio(dense_dir: Path, pruned_dir: Path, shape, repeats: int = 30) -> float:
    """Median forward time of the pruned model over the dense one, interleaved in one
    process so that both see the same machine state."""
    dense, pruned = load_pruned(dense_dir).eval(), load_pruned(pruned_dir).eval()
    x = torch.randn(*shape)
    times = {"dense": [], "pruned": []}
    with torch.no_grad():
        for model in (dense, pruned):
            for _ in range(3):
                model(x)
        for _ in range(repeats):
            for name, model in (("dense", dense), ("pruned", pruned)):
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return statistics.median(times["pruned"]) / statistics.median(times["dense"])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-dir", help="the CIFAR-10 JPEG copy, unpacked (imagefolder)")
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--baseline-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument(
        "--sweep",
        type=float,
        nargs="*",
        default=[0.7, 0.3],
        help="other keep fractions for the best Ising variant, l1, random",
    )
    parser.add_argument("--docs", action="store_true", help="also write docs/results.md")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / "study.json"
    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {"runs": []}
    done = {(r["dataset"], r["method"], r["seed"], r["keep"]) for r in raw["runs"]}

    datasets = []
    if args.cifar_dir:
        datasets.append(("cifar10-jpeg", "imagefolder", args.cifar_dir, (64, 3, 32, 32)))
    if args.fashion_dir and Path(args.fashion_dir).exists():
        datasets.append(("fashion-mnist", "fashion-mnist", args.fashion_dir, (64, 1, 28, 28)))

    def common(dataset, data_dir, seed, run_dir):
        return dict(
            out=str(run_dir),
            model="resnet20",
            dataset=dataset,
            data_dir=data_dir,
            train_subset=args.train_subset,
            test_subset=args.test_subset,
            seed=seed,
            progress=False,
            batch_size=128,
        )

    def record(entry):
        raw["runs"].append(entry)
        raw_path.write_text(json.dumps(raw, indent=1))

    for label, dataset, data_dir, shape in datasets:
        for seed in args.seeds:
            base_dir = out / label / f"dense-seed{seed}"
            if (label, "dense", seed, 1.0) not in done:
                shutil.rmtree(base_dir, ignore_errors=True)
                report = run(
                    RunConfig(
                        **common(dataset, data_dir, seed, base_dir),
                        method="none",
                        epochs=args.baseline_epochs,
                        finetune_epochs=0,
                        lr=0.1,
                    )
                )
                record(
                    {
                        "dataset": label,
                        "method": "dense",
                        "seed": seed,
                        "keep": 1.0,
                        "top1": report["accuracy"]["after"]["top1"],
                        "top5": report["accuracy"]["after"]["top5"],
                        "params": report["params"]["after"],
                        "macs": report["macs"]["after"],
                        "latency_ratio": 1.0,
                        "selection_seconds": 0.0,
                    }
                )

        def one(
            method_name, seed, keep, label=label, dataset=dataset, data_dir=data_dir, shape=shape
        ):
            if (label, method_name, seed, keep) in done:
                return
            method, energy, solver, params = METHODS[method_name]
            base_dir = out / label / f"dense-seed{seed}"
            run_dir = out / label / f"{method_name.replace(' ', '_')}-keep{keep}-seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            started = time.perf_counter()
            report = run(
                RunConfig(
                    **common(dataset, data_dir, seed, run_dir),
                    checkpoint=str(base_dir / "model"),
                    method=method,
                    energy=energy,
                    solver=solver,
                    solver_params=params,
                    keep=keep,
                    epochs=args.epochs,
                    finetune_epochs=args.finetune_epochs,
                    lr=0.02,
                )
            )
            record(
                {
                    "dataset": label,
                    "method": method_name,
                    "seed": seed,
                    "keep": keep,
                    "top1": report["accuracy"]["after"]["top1"],
                    "top5": report["accuracy"]["after"]["top5"],
                    "top1_dense": report["stages"]["initial"]["top1"],
                    "params": report["params"]["after"],
                    "params_before": report["params"]["before"],
                    "macs": report["macs"]["after"],
                    "macs_before": report["macs"]["before"],
                    "latency_ratio": latency_ratio(base_dir / "model", run_dir / "model", shape),
                    "selection_seconds": report["timing_seconds"].get("selection"),
                    "run_seconds": time.perf_counter() - started,
                }
            )

        for seed in args.seeds:
            for method_name in METHODS:
                one(method_name, seed, args.keep)
        ising = [m for m in METHODS if m.startswith("ising")]
        best = max(
            ising,
            key=lambda m: (
                summary(
                    [
                        r["top1"]
                        for r in raw["runs"]
                        if r["dataset"] == label and r["method"] == m and r["keep"] == args.keep
                    ]
                )[0]
                or -1
            ),
        )
        raw.setdefault("best_ising", {})[label] = best
        for keep in args.sweep:
            for method_name in (best, *SWEEP_BASELINES):
                one(method_name, args.seeds[0], keep)

    raw["settings"] = vars(args) | {
        "date": str(date.today()),
        "machine": cpu_name(),
        "torch": torch.__version__,
        "cpus": torch.get_num_threads(),
    }
    raw_path.write_text(json.dumps(raw, indent=1))
    from report import write_report

    write_report(raw, out, docs=Path(__file__).resolve().parents[2] / "docs" if args.docs else None)


if __name__ == "__main__":
    main()
