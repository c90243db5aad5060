"""Networks without Ising: datasets, models, training, distributed plumbing and the
pickle-free saved-model format. Imports torch."""
