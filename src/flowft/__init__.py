"""flowft: RL finetuning of flow-matching robot control policies (OGPO and baselines)."""

__version__ = "0.1.0"

# Public API, imported on first use (PEP 562): `import flowft` (and so `flowft --help`) does not import torch.
_EXPORTS = {
    "load_policy": "flowft.deploy",
    "TaskSpec": "flowft.envs.taskspec",
    "register_task": "flowft.registry",
    "get_task": "flowft.registry",
    "make_env": "flowft.registry",
    "env_task": "flowft.envs.own",
    "FlowftAdapter": "flowft.envs.adapter",
    "check_env": "flowft.envs.check",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowft' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
