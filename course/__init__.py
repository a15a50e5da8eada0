"""course: causal language-model pretraining, built end to end.

The package holds every step of the pipeline as small, tested modules; see
ARCHITECTURE.md for the map. Lessons import what they do not teach from here.
"""

__version__ = "0.1.0"
