"""Register a third-party dimod sampler under a new name and use it like a built-in.

Any ``dimod.Sampler`` works the same way: ``dwave.system.DWaveSampler`` wrapped in
``EmbeddingComposite`` for a QPU, a cloud hybrid solver, or the toy below. Packages can
also publish solvers through the ``ising_qubo.solvers`` entry-point group:

    [project.entry-points."ising_qubo.solvers"]
    my-solver = "my_package.samplers:MySampler"
"""

from __future__ import annotations

import dimod
import numpy as np

import ising_qubo


class RandomRestartGreedy(dimod.Sampler):
    """Toy third-party sampler: dimod's random sampler, then steepest descent."""

    parameters = {"num_reads": [], "seed": []}
    properties = {"vendor": "example"}

    def sample(self, bqm, num_reads=10, seed=None, **kwargs):
        start = dimod.RandomSampler().sample(bqm, num_reads=num_reads, seed=seed)
        return ising_qubo.get_solver("greedy").sample(bqm, initial_states=start, seed=seed)


def main() -> None:
    ising_qubo.register_solver(
        "restart-greedy",
        RandomRestartGreedy,
        description="random starts + steepest descent (example)",
        overwrite=True,
    )
    print("registered solvers:", ", ".join(ising_qubo.list_solvers()))

    rng = np.random.default_rng(1)
    bqm = ising_qubo.from_ising_matrix(rng.normal(size=16), np.triu(rng.normal(size=(16, 16)), 1))
    by_name = ising_qubo.solve(bqm, "restart-greedy", num_reads=50, seed=0)
    by_instance = ising_qubo.solve(bqm, RandomRestartGreedy(), num_reads=50, seed=0)
    optimum = ising_qubo.solve(bqm, "exact").first.energy
    print(f"restart-greedy by name:     {by_name.first.energy:.6f}")
    print(f"same sampler as instance:   {by_instance.first.energy:.6f}")
    print(f"brute-force optimum:        {optimum:.6f}")


if __name__ == "__main__":
    main()
