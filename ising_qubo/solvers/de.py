"""``de``: the paper's binary differential evolution, vectorised over runs and members.

Salehinejad & Valaee (ICASSP 2021) evolve a population of binary states: for each member,
three other members x1, x2, x3 give a mutant that copies x1 except where a uniform draw
exceeds F and x2 == x3, where x1's bit is flipped; binomial crossover with rate CR mixes
the mutant into the member; the trial replaces the member only if its energy is lower.

Unlike the authors' public code, every candidate is scored on its own state (their code
scores a reshape of the whole population), and a mutated bit where x2 != x3 keeps x1's
value instead of becoming 0.
"""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np

from ising_qubo.solvers._common import (
    ArrayModel,
    Deadline,
    check_bqm,
    in_unit_interval,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)


class DifferentialEvolutionSampler(dimod.Sampler, dimod.Initialized):
    """Binary differential evolution; each read is one independent population's best.

    Defaults are the paper's: population 8, F = 0.9, CR = 0.9.
    """

    parameters = {
        "num_reads": [],
        "population_size": [],
        "mutation_factor": [],
        "crossover_rate": [],
        "num_generations": [],
        "time_limit": [],
        "seed": [],
        "initial_states": [],
        "initial_states_generator": [],
    }
    properties: dict[str, Any] = {}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int | None = None,
        population_size: int = 8,
        mutation_factor: float = 0.9,
        crossover_rate: float = 0.9,
        num_generations: int = 1000,
        time_limit: float | None = None,
        seed: int | None = None,
        initial_states: Any = None,
        initial_states_generator: str = "random",
        **parameters: Any,
    ) -> dimod.SampleSet:
        check_bqm(bqm, "de")
        self.remove_unknown_kwargs(**parameters)
        runs = positive_int(num_reads or 1, "num_reads", "de")
        members = positive_int(population_size, "population_size", "de")
        if members < 4:
            raise ValueError("de: population_size must be at least 4 "
                             "(each mutant needs three other members)")
        generations = positive_int(num_generations, "num_generations", "de")
        f = in_unit_interval(mutation_factor, "mutation_factor", "de")
        cr = in_unit_interval(crossover_rate, "crossover_rate", "de")
        deadline = Deadline(optional_time_limit(time_limit, "de"))

        parsed = self.parse_initial_states(
            bqm, initial_states=initial_states,
            initial_states_generator=initial_states_generator,
            num_reads=runs * members, seed=seed)
        rng = np.random.default_rng(seed)
        model = ArrayModel.from_bqm(bqm, dimod.BINARY)
        n = model.num_variables
        start = parsed.initial_states.record.sample
        if bqm.vartype is dimod.SPIN:
            start = (start + 1) // 2
        population = np.asarray(start, dtype=np.uint8).reshape(runs, members, n)

        def score(states: np.ndarray) -> np.ndarray:
            return model.energies(states.reshape(runs * members, n)).reshape(runs, members)

        info: dict[str, Any] = {}
        with wall_timer(info):
            energies = score(population)
            done = 0
            while done < generations:
                trial = _trial_population(population, f, cr, rng)
                trial_energies = score(trial)
                better = trial_energies < energies
                population = np.where(better[..., None], trial, population)
                energies = np.where(better, trial_energies, energies)
                done += 1
                if deadline.expired():
                    break
        info["num_generations"] = done
        best = population[np.arange(runs), energies.argmin(axis=1)]
        return sampleset_from_states(best, dimod.BINARY, bqm, info)


def _trial_population(population: np.ndarray, f: float, cr: float,
                      rng: np.random.Generator) -> np.ndarray:
    runs, members, n = population.shape
    # Three distinct partners per member, none the member itself: the three smallest of
    # random keys with the member's own key set to infinity.
    keys = rng.random((runs, members, members))
    keys[:, np.arange(members), np.arange(members)] = np.inf
    partners = np.argpartition(keys, 3, axis=-1)[..., :3]
    x1, x2, x3 = (np.take_along_axis(population, partners[..., k:k + 1].reshape(runs, members, 1)
                                     .repeat(n, axis=-1), axis=1) for k in range(3))
    flip = (rng.random((runs, members, n)) > f) & (x2 == x3)
    mutant = x1 ^ flip.astype(np.uint8)
    cross = rng.random((runs, members, n)) < cr
    return np.where(cross, mutant, population)
