"""The one thing pyproject.toml cannot declare: torch-sa's compiled CPU kernel.

The extension is optional: where it does not build (no C compiler), the install goes on
and torch-sa runs its numba kernel instead (``info["backend"]`` says which ran). Every
other setting of the package is in pyproject.toml.
"""

import sys

from setuptools import Extension, setup

# No fused multiply-add: the kernel's results must equal the numba kernel's, which does
# none, to the last bit (ising_qubo/solvers/_sa_kernel.c).
_FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "ising_qubo.solvers._sa_kernel",
            ["ising_qubo/solvers/_sa_kernel.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        )
    ]
)
