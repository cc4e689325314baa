"""xsweep: hyperparameter sweeps for cross-lingual prompt tuning on Ray."""

__version__ = "0.1.0"
