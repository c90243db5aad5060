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
    Stop,
    check_bqm,
    check_initial_states_generator,
    check_seed,
    check_states_memory,
    in_unit_interval,
    optional_time_limit,
    parse_initial_states,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers.capabilities import Capability as C

# Runs are evolved in blocks whose scoring temporaries hold at most this many numbers
# (16 MB each): scoring a whole large population at once took tens of GB and minutes.
_BLOCK_ELEMENTS = 1 << 21
# Peak memory per member state and variable, measured (9 bytes): dimod draws the
# initial states as int64, the population is uint8, the SampleSet int8.
_STATE_BYTES = 10


class DifferentialEvolutionSampler(dimod.Sampler, dimod.Initialized):
    """Binary differential evolution; each read is one independent population's best.

    Defaults are the paper's: population 8, F = 0.9, CR = 0.9.

    ``time_limit`` (seconds from the call) and Ctrl-C are checked between blocks of runs
    (populations) within a generation; a stopped run returns every population's best so
    far (``info["interrupted"]`` is True after Ctrl-C). Populations not yet scored when
    the first generation is cut short are left out, so fewer than ``num_reads`` samples
    may come back. ``info["num_generations"]`` counts the generations every returned run
    completed.
    """

    capabilities = frozenset({C.INITIAL_STATES, C.TIME_LIMIT, C.INTERRUPT})
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
        stop = Stop(optional_time_limit(time_limit, "de"))
        check_bqm(bqm, "de")
        self.remove_unknown_kwargs(**parameters)
        runs = positive_int(1 if num_reads is None else num_reads, "num_reads", "de")
        members = positive_int(population_size, "population_size", "de")
        if members < 4:
            raise ValueError(
                "de: population_size must be at least 4 (each mutant needs three other members)"
            )
        generations = positive_int(num_generations, "num_generations", "de")
        f = in_unit_interval(mutation_factor, "mutation_factor", "de")
        cr = in_unit_interval(crossover_rate, "crossover_rate", "de")
        check_seed(seed, "de")
        check_initial_states_generator(initial_states_generator, "de")
        check_states_memory(
            runs * members,
            bqm.num_variables,
            _STATE_BYTES,
            "de",
            count_text=f"num_reads={runs} x population_size={members}",
        )

        start = parse_initial_states(
            self,
            bqm,
            initial_states=initial_states,
            initial_states_generator=initial_states_generator,
            num_reads=runs * members,
            seed=seed,
        )
        rng = np.random.default_rng(seed)
        model = ArrayModel.from_bqm(bqm, dimod.BINARY)
        n = model.num_variables
        if bqm.vartype is dimod.SPIN:
            start = (start + 1) // 2
        population = np.array(start, dtype=np.uint8).reshape(runs, members, n)
        energies = np.empty((runs, members))
        block = max(1, _BLOCK_ELEMENTS // (members * max(n, len(model.data), 1)))

        def score(states: np.ndarray) -> np.ndarray:
            count = len(states)
            return model.energies(states.reshape(count * members, n)).reshape(count, members)

        info: dict[str, Any] = {}
        scored = 0  # runs [0, scored) have a scored population
        done = 0  # generations completed by every run
        with stop, wall_timer(info):
            a = b = 0
            try:
                while done < generations:
                    for a in range(0, runs, block):
                        if (done or a) and stop():
                            raise _Stopped
                        b = min(a + block, runs)
                        if b > scored:
                            energies[a:b] = score(population[a:b])
                            scored = b
                        trial = _trial_population(population[a:b], f, cr, rng)
                        trial_energies = score(trial)
                        better = trial_energies < energies[a:b]
                        population[a:b] = np.where(better[..., None], trial, population[a:b])
                        energies[a:b] = np.where(better, trial_energies, energies[a:b])
                    done += 1
            except _Stopped:
                pass
            except KeyboardInterrupt:  # may have landed between the two updates above
                if not stop.interrupt():
                    raise
                scored = min(scored, b)
                if not scored:
                    raise  # no population scored yet: nothing to return
                energies[a:scored] = score(population[a:scored])
        info["num_generations"] = done
        stop.report(info)
        best = population[np.arange(scored), energies[:scored].argmin(axis=1)]
        return sampleset_from_states(best, dimod.BINARY, bqm, info)


class _Stopped(Exception):
    """Ends the generation loop (time limit or Ctrl-C)."""


def _trial_population(
    population: np.ndarray, f: float, cr: float, rng: np.random.Generator
) -> np.ndarray:
    runs, members, n = population.shape
    # Three distinct partners per member, none the member itself: the three smallest of
    # random keys with the member's own key set to infinity.
    keys = rng.random((runs, members, members))
    keys[:, np.arange(members), np.arange(members)] = np.inf
    partners = np.argpartition(keys, 3, axis=-1)[..., :3]
    x1, x2, x3 = (
        np.take_along_axis(
            population,
            partners[..., k : k + 1].reshape(runs, members, 1).repeat(n, axis=-1),
            axis=1,
        )
        for k in range(3)
    )
    flip = (rng.random((runs, members, n)) > f) & (x2 == x3)
    mutant = x1 ^ flip.astype(np.uint8)
    cross = rng.random((runs, members, n)) < cr
    return np.where(cross, mutant, population)
