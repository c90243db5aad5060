"""CNN pruning by Ising energies: unit groups, energies, importances, the pruning problem,
pruners, the end-to-end run and its plots. Imports torch and Torch-Pruning."""
