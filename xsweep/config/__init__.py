"""Typed experiment configs: YAML in, dataclasses out, strict.

An experiment is a YAML file read with `yaml.safe_load` semantics into `ExperimentConfig`.
Every key is checked against the dataclasses: an unknown key, a wrong type or an impossible
combination is an `XsweepError` that names the key, the file and line, and the valid choices.
Dotted overrides (`optim.lr=1e-3`) use one grammar on the command line and in sweep grids
(`sweep.grid: {optim.lr: [1e-2, 1e-3]}`).

What a seed controls is defined once, here: `seed` sets parameter initialisation, data order
and dropout; the few-shot sample uses `data.sample_seed`, which defaults to `seed`.

    schema.py    the dataclasses, one per section, each with its own rules (`check`)
    checks.py    the rules of a whole experiment, in order, and those that relate sections
    coerce.py    plain data -> dataclasses, with typed conversion and unknown-key errors
    loading.py   YAML with line numbers, overrides, from_dict / to_dict / dump_yaml, paths
    grid.py      the sweep grid's points
"""

from xsweep.config.grid import grid_points
from xsweep.config.loading import (
    dump_yaml,
    from_dict,
    load_config,
    parse_override,
    parse_yaml,
    set_dotted,
    to_dict,
    with_overrides,
)
from xsweep.config.schema import (
    NAMED_ALIGN_DATA,
    NAMED_DATA,
    AlignStageConfig,
    BackboneConfig,
    DataConfig,
    ExperimentConfig,
    HeadConfig,
    HeadKind,
    Method,
    OptimConfig,
    OptunaConfig,
    PromptConfig,
    PromptKind,
    PruningConfig,
    ResourcesConfig,
    SweepConfig,
    StorageConfig,
    can_fuse,
)

__all__ = [
    "NAMED_ALIGN_DATA", "NAMED_DATA", "AlignStageConfig", "BackboneConfig", "DataConfig", "ExperimentConfig",
    "HeadConfig", "HeadKind", "Method", "OptimConfig", "OptunaConfig", "PromptConfig", "PromptKind",
    "PruningConfig", "ResourcesConfig", "StorageConfig", "SweepConfig", "can_fuse", "dump_yaml", "from_dict",
    "grid_points", "load_config", "parse_override", "parse_yaml", "set_dotted", "to_dict", "with_overrides",
]
